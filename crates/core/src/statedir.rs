//! Deleting a container's state directory (`/var/lib/machines/NAME`) when the
//! container's root may have planted anything in it: no symlink is followed and
//! no mount point is crossed.
