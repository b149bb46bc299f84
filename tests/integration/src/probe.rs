//! The suite's binary run as `switch-to-configuration` (or as
//! `nixos-nspawn-integration --probe-confinement FILE`): what a program a
//! hostile container planted learns about its own confinement, appended to
//! [`OUT`] (or FILE) as `key=value` lines. The suite copies its own binary into
//! a container's root and bind-mounts it over the system's
//! `switch-to-configuration` from inside, so a reload runs it
//! (`scenarios_security::reload_confined`). The guests bind the host's `/usr`,
//! so this dynamically linked binary runs there.
//!
//! Written: `seccomp_filters` (the `Seccomp_filters:` count of
//! `/proc/self/status`), `cap_bnd`, `no_new_privs`, `uid`, `cgroup` (every line
//! of `/proc/self/cgroup`, `;`-separated) and `open_by_handle_at` (`ok` when
//! the kernel let it open a file handle of `/`, else the errno name): the
//! syscall that opened the host's `/` in the original attack.

use std::io::Write as _;

/// Where the probe writes when it runs as `switch-to-configuration`.
pub const OUT: &str = "/var/log/itest-probe.log";

/// Whether this process was started as the probe; returns the output file.
pub fn invoked() -> Option<String> {
    let mut args = std::env::args();
    let argv0 = args.next().unwrap_or_default();
    if argv0.rsplit('/').next() == Some("switch-to-configuration") {
        return Some(OUT.into());
    }
    match args.next().as_deref() {
        Some("--probe-confinement") => Some(args.next().unwrap_or_else(|| OUT.into())),
        _ => None,
    }
}

fn status_field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(':')))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| "?".into())
}

/// `name_to_handle_at("/")`, then `open_by_handle_at` on it.
fn open_by_handle() -> String {
    // struct file_handle { u32 handle_bytes; i32 handle_type; u8 f_handle[]; }
    const MAX: usize = 128;
    #[repr(C)]
    struct Handle {
        bytes: u32,
        kind: i32,
        data: [u8; MAX],
    }
    let mut h = Handle {
        bytes: MAX as u32,
        kind: 0,
        data: [0; MAX],
    };
    let mut mount_id: libc::c_int = 0;
    // SAFETY: plain syscalls with pointers to live, correctly sized buffers.
    unsafe {
        let r = libc::syscall(
            libc::SYS_name_to_handle_at,
            libc::AT_FDCWD,
            c"/".as_ptr(),
            &mut h as *mut Handle,
            &mut mount_id as *mut libc::c_int,
            0,
        );
        if r != 0 {
            return format!("name_to_handle_at:{}", errno_name());
        }
        let mount_fd = libc::open(c"/".as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY);
        if mount_fd < 0 {
            return format!("open:{}", errno_name());
        }
        let fd = libc::syscall(
            libc::SYS_open_by_handle_at,
            mount_fd,
            &mut h as *mut Handle,
            libc::O_RDONLY | libc::O_DIRECTORY,
        );
        if fd < 0 {
            return errno_name();
        }
        libc::close(fd as libc::c_int);
        libc::close(mount_fd);
    }
    "ok".into()
}

fn errno_name() -> String {
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EPERM) => "EPERM".into(),
        Some(libc::ENOSYS) => "ENOSYS".into(),
        Some(libc::EACCES) => "EACCES".into(),
        Some(libc::EOPNOTSUPP) => "EOPNOTSUPP".into(),
        _ => format!("{e}"),
    }
}

pub fn main(out: &str) -> i32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let lines = [
        format!(
            "seccomp_filters={}",
            status_field(&status, "Seccomp_filters")
        ),
        format!("cap_bnd={}", status_field(&status, "CapBnd")),
        format!("no_new_privs={}", status_field(&status, "NoNewPrivs")),
        format!("uid={}", status_field(&status, "Uid")),
        format!("cgroup={}", cgroup.trim().replace('\n', ";")),
        format!("open_by_handle_at={}", open_by_handle()),
        format!(
            "args={}",
            std::env::args().skip(1).collect::<Vec<_>>().join(" ")
        ),
    ];
    let text = format!("{}\n--\n", lines.join("\n"));
    let res = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out)
        .and_then(|mut f| f.write_all(text.as_bytes()));
    // Its output must reach the unit's journal, as the real command's does.
    println!("itest-probe ran: {}", lines[0]);
    match res {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("probe: writing {out}: {e}");
            1
        }
    }
}
