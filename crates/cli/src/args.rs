//! Command-line arguments (argh). Every command and flag is documented in
//! `docs/cli.md`; `nixos-nspawn help COMMAND` prints the same text.

use argh::FromArgs;
use nixos_nspawn_core::registry::Strategy;

/// Manage NixOS containers on systemd-nspawn and systemd-networkd: imperative
/// containers with generations and rollback, and reconciling running
/// containers with the registry (/etc/nixos-nspawn/containers). Paths are
/// resolved under $NIXOS_NSPAWN_ROOT (default /). nixos-nspawn --version
/// prints the version; man nixos-nspawn describes every command.
#[derive(FromArgs, Debug)]
#[argh(
    error_code(1, "an error (the message says what failed, with its causes)"),
    error_code(2, "usage: unknown command or flag, bad argument"),
    error_code(3, "not found: no such container or generation"),
    error_code(
        4,
        "refused: conflict (already exists, declarative, running, mount points)"
    )
)]
pub struct Cli {
    /// show debug messages (commands run, decisions taken)
    #[argh(switch, short = 'v')]
    pub verbose: bool,
    #[argh(subcommand)]
    pub command: Command,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum Command {
    Create(CreateArgs),
    Update(UpdateArgs),
    Remove(RemoveArgs),
    List(ListArgs),
    ListGenerations(ListGenerationsArgs),
    Rollback(RollbackArgs),
    Autostart(AutostartArgs),
    Apply(ApplyArgs),
    Status(StatusArgs),
    ImportClassic(ImportClassicArgs),
    Doctor(DoctorArgs),
    CheckRegistry(crate::commands::check::CheckRegistryArgs),
    Start(crate::commands::machine::StartArgs),
    Stop(crate::commands::machine::StopArgs),
    Restart(crate::commands::machine::RestartArgs),
    Terminate(crate::commands::machine::TerminateArgs),
    Login(crate::commands::machine::LoginArgs),
    RootLogin(crate::commands::machine::RootLoginArgs),
    Run(crate::commands::machine::RunArgs),
    ShowIp(crate::commands::show::ShowIpArgs),
    ShowHostKey(crate::commands::show::ShowHostKeyArgs),
}

impl Command {
    /// Whether `-v` was given after the command.
    pub fn verbose(&self) -> bool {
        match self {
            Command::Create(a) => a.verbose,
            Command::Update(a) => a.verbose,
            Command::Remove(a) => a.verbose,
            Command::List(a) => a.verbose,
            Command::ListGenerations(a) => a.verbose,
            Command::Rollback(a) => a.verbose,
            Command::Autostart(a) => a.verbose,
            Command::Apply(a) => a.verbose,
            Command::Status(a) => a.verbose,
            Command::ImportClassic(a) => a.verbose,
            Command::Doctor(a) => a.verbose,
            Command::CheckRegistry(a) => a.verbose,
            // The machine commands take no -v after the command: `run NAME ls -v`
            // hands its -v to the container's command.
            Command::Start(_)
            | Command::Stop(_)
            | Command::Restart(_)
            | Command::Terminate(_)
            | Command::Login(_)
            | Command::RootLogin(_)
            | Command::Run(_)
            | Command::ShowIp(_)
            | Command::ShowHostKey(_) => false,
        }
    }

    /// The command's name, as typed.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Create(_) => "create",
            Command::Update(_) => "update",
            Command::Remove(_) => "remove",
            Command::List(_) => "list",
            Command::ListGenerations(_) => "list-generations",
            Command::Rollback(_) => "rollback",
            Command::Autostart(_) => "autostart",
            Command::Apply(_) => "apply",
            Command::Status(_) => "status",
            Command::ImportClassic(_) => "import-classic",
            Command::Doctor(_) => "doctor",
            Command::CheckRegistry(_) => "check-registry",
            Command::Start(_) => "start",
            Command::Stop(_) => "stop",
            Command::Restart(_) => "restart",
            Command::Terminate(_) => "terminate",
            Command::Login(_) => "login",
            Command::RootLogin(_) => "root-login",
            Command::Run(_) => "run",
            Command::ShowIp(_) => "show-ip",
            Command::ShowHostKey(_) => "show-host-key",
        }
    }

    /// Whether the command changes the host (registry, profiles, units), so
    /// that only root may run it against the real root. Dry runs only read.
    pub fn changes_the_host(&self) -> bool {
        match self {
            Command::Create(_)
            | Command::Update(_)
            | Command::Remove(_)
            | Command::Rollback(_)
            | Command::ImportClassic(_)
            | Command::Start(_)
            | Command::Stop(_)
            | Command::Restart(_)
            | Command::Terminate(_) => true,
            Command::Autostart(a) => !a.dry_run,
            Command::Apply(a) => !a.dry_run,
            Command::List(_)
            | Command::ListGenerations(_)
            | Command::Status(_)
            | Command::Doctor(_)
            | Command::CheckRegistry(_)
            | Command::Login(_)
            | Command::RootLogin(_)
            | Command::Run(_)
            | Command::ShowIp(_)
            | Command::ShowHostKey(_) => false,
        }
    }
}

pub fn parse_strategy(s: &str) -> Result<Strategy, String> {
    match s {
        "none" => Ok(Strategy::None),
        "reload" => Ok(Strategy::Reload),
        "restart" => Ok(Strategy::Restart),
        "dynamic" => Ok(Strategy::Dynamic),
        _ => Err(format!(
            "{s:?} is not a strategy: expected none, reload, restart or dynamic"
        )),
    }
}

/// Imperative or declarative, for `list --type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Imperative,
    Declarative,
}

pub fn parse_kind(s: &str) -> Result<Kind, String> {
    match s {
        "imperative" => Ok(Kind::Imperative),
        "declarative" => Ok(Kind::Declarative),
        _ => Err(format!(
            "{s:?} is not a type: expected imperative or declarative"
        )),
    }
}

/// A command with the build-source flags (`create`, `update`): `verbose`,
/// `name` (with its attributes), then `--config`, `--config-file`, `--flake`,
/// `--system` (and its aliases) and the Nix options, then the command's own
/// fields. `config` and `system` take their help text; argh has no flag groups,
/// so the group is spliced in here, and [`BuildFlags`] reads it.
macro_rules! with_build_flags {
    (
        $(#[$m:meta])*
        pub struct $ty:ident {
            $(#[$name_meta:meta])*
            pub name: String,
            config: [$(#[$config_doc:meta])*],
            system: [$(#[$system_doc:meta])*],
            $($rest:tt)*
        }
    ) => {
        #[derive(FromArgs, Debug, Default)]
        $(#[$m])*
        pub struct $ty {
            /// show debug messages (as -v before the command)
            #[argh(switch, short = 'v')]
            pub verbose: bool,
            $(#[$name_meta])*
            pub name: String,
            $(#[$config_doc])*
            #[argh(option)]
            pub config: Option<String>,
            /// a NixOS configuration file (classic nixos-container's name)
            #[argh(option)]
            pub config_file: Option<String>,
            /// flake to build: REF#ATTR builds REF#nixosContainers.<platform>.ATTR
            /// (or REF#nixosConfigurations.ATTR when the flake has only that)
            #[argh(option)]
            pub flake: Option<String>,
            $(#[$system_doc])*
            #[argh(option)]
            pub system: Option<String>,
            /// the same as --system (python-nixos-nspawn's name for it)
            #[argh(option, hidden_help)]
            pub profile: Option<String>,
            /// the same as --system (classic nixos-container's name for it)
            #[argh(option, hidden_help)]
            pub system_path: Option<String>,
            /// pass a Nix option to the build: --option NAME VALUE (repeatable)
            #[argh(option)]
            pub option: Vec<String>,
            /// pass --impure to the flake build
            #[argh(switch)]
            pub impure: bool,
            /// pass --override-input INPUT REF to the flake build (repeatable)
            #[argh(option)]
            pub override_input: Vec<String>,
            $($rest)*
        }

        impl $ty {
            /// The build-source flags.
            pub fn build_flags(&self) -> BuildFlags<'_> {
                BuildFlags {
                    config: self.config.as_deref(),
                    config_file: self.config_file.as_deref(),
                    flake: self.flake.as_deref(),
                    systems: [
                        ("--system", self.system.as_deref()),
                        ("--profile", self.profile.as_deref()),
                        ("--system-path", self.system_path.as_deref()),
                    ],
                    option: &self.option,
                    impure: self.impure,
                    override_input: &self.override_input,
                }
            }
        }
    };
}

/// The build-source flags of `create` and `update`, as given.
#[derive(Debug, Clone, Copy)]
pub struct BuildFlags<'a> {
    pub config: Option<&'a str>,
    pub config_file: Option<&'a str>,
    pub flake: Option<&'a str>,
    /// `--system` and its aliases, each with its flag.
    pub systems: [(&'static str, Option<&'a str>); 3],
    pub option: &'a [String],
    pub impure: bool,
    pub override_input: &'a [String],
}

with_build_flags! {
/// Create an imperative container: build its system, make it generation 1 of
/// its profile, write its registry entry, daemon-reload and start it. Any
/// failure after the first write undoes everything.
#[argh(subcommand, name = "create")]
pub struct CreateArgs {
    /// container (machine) name
    #[argh(positional)]
    pub name: String,
    config: [
    /// a NixOS configuration to build, with the container profile: a file, or
    /// inline attribute definitions ('services.nginx.enable = true;')
    ],
    system: [
    /// an already built system: a store path with init and bin/switch-to-configuration
    ],
    /// if NAME is taken, use NAME-0, NAME-1, … (printed on stdout)
    #[argh(switch)]
    pub ensure_unique_name: bool,
    /// static IPv4 address of the host side (with --local-address)
    #[argh(option)]
    pub host_address: Option<String>,
    /// static IPv4 address of the container side (with --host-address)
    #[argh(option)]
    pub local_address: Option<String>,
    /// static IPv6 address of the host side (with --local-address6)
    #[argh(option)]
    pub host_address6: Option<String>,
    /// static IPv6 address of the container side (with --host-address6)
    #[argh(option)]
    pub local_address6: Option<String>,
    /// the Nix platform of the system to build (default: this host's, e.g. x86_64-linux)
    #[argh(option)]
    pub platform: Option<String>,
    /// join the network zone Z (vz-Z bridge shared with other containers)
    #[argh(option)]
    pub zone: Option<String>,
    /// connect to the existing host bridge B
    #[argh(option)]
    pub bridge: Option<String>,
    /// share the host's network (no private network)
    #[argh(switch)]
    pub host_network: bool,
    /// bind mount HOST[:CONTAINER[:ro]] (repeatable)
    #[argh(option)]
    pub bind: Vec<String>,
    /// forward [tcp|udp:]HOST[:CONTAINER] from the host (repeatable)
    #[argh(option)]
    pub port: Vec<String>,
    /// wipe the root file system at every start
    #[argh(switch)]
    pub ephemeral: bool,
    /// run with a private user namespace (PrivateUsers=pick; the default
    /// unless the system's own nixosContainer settings say otherwise)
    #[argh(switch)]
    pub user_namespacing: bool,
    /// run without a user namespace: the container's root is the host's root
    #[argh(switch)]
    pub no_user_namespacing: bool,
    /// how updates are activated: none, reload, restart or dynamic (default)
    #[argh(option, from_str_fn(parse_strategy))]
    pub strategy: Option<Strategy>,
    /// do not start it at boot
    #[argh(switch)]
    pub no_autostart: bool,
    /// start it at boot (the default; classic nixos-container's flag)
    #[argh(switch, hidden_help)]
    pub auto_start: bool,
    /// do not start it now
    #[argh(switch)]
    pub no_start: bool,
    /// print the result as JSON
    #[argh(switch)]
    pub json: bool,
}
}

with_build_flags! {
/// Build a new system for an imperative container, make it the next
/// generation, update the registry and activate it (reload or restart, as its
/// strategy says). Without --config, --flake or --system it rebuilds from the
/// source recorded when it was created or last updated.
#[argh(subcommand, name = "update")]
pub struct UpdateArgs {
    /// container name
    #[argh(positional)]
    pub name: String,
    config: [
    /// a NixOS configuration to build: a file, or inline attribute
    /// definitions (without any source: the one recorded at create/update)
    ],
    system: [
    /// an already built system (store path)
    ],
    /// the Nix platform of the system to build (default: this host's)
    #[argh(option)]
    pub platform: Option<String>,
    /// set the activation strategy (kept in the registry): none, reload, restart, dynamic
    #[argh(option, from_str_fn(parse_strategy))]
    pub strategy: Option<Strategy>,
    /// print the result as JSON
    #[argh(switch)]
    pub json: bool,
}
}

/// Stop an imperative container and remove its registry entry, profile and
/// applied state.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "remove")]
pub struct RemoveArgs {
    /// show debug messages (as -v before the command)
    #[argh(switch, short = 'v')]
    pub verbose: bool,
    /// container name
    #[argh(positional)]
    pub name: String,
    /// also delete /var/lib/machines/NAME (never following links or crossing mounts)
    #[argh(switch)]
    pub delete_state: bool,
}

/// List containers: name, kind, state, current generation, addresses.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "list")]
pub struct ListArgs {
    /// show debug messages (as -v before the command)
    #[argh(switch, short = 'v')]
    pub verbose: bool,
    /// only imperative or only declarative containers
    #[argh(option, long = "type", from_str_fn(parse_kind))]
    pub kind: Option<Kind>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// List the generations of a container's profile, the current one marked.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "list-generations")]
pub struct ListGenerationsArgs {
    /// show debug messages (as -v before the command)
    #[argh(switch, short = 'v')]
    pub verbose: bool,
    /// container name
    #[argh(positional)]
    pub name: String,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// Go back to the previous generation (or generation N) of an imperative
/// container and activate it.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "rollback")]
pub struct RollbackArgs {
    /// show debug messages (as -v before the command)
    #[argh(switch, short = 'v')]
    pub verbose: bool,
    /// container name
    #[argh(positional)]
    pub name: String,
    /// generation to switch to (default: the one before the current)
    #[argh(option)]
    pub to: Option<u64>,
    /// set the activation strategy (kept in the registry): none, reload, restart, dynamic
    #[argh(option, from_str_fn(parse_strategy))]
    pub strategy: Option<Strategy>,
    /// print the result as JSON
    #[argh(switch)]
    pub json: bool,
}

/// Start every container with autoStart that is not running.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "autostart")]
pub struct AutostartArgs {
    /// show debug messages (as -v before the command)
    #[argh(switch, short = 'v')]
    pub verbose: bool,
    /// only show which containers would be started
    #[argh(switch, short = 'n')]
    pub dry_run: bool,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// Reconcile running containers with the registry: daemon-reload, then start,
/// reload, restart or stop each container as its entry and strategy say,
/// printing every action and its reason.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "apply")]
pub struct ApplyArgs {
    /// show debug messages (as -v before the command)
    #[argh(switch, short = 'v')]
    pub verbose: bool,
    /// only print the plan
    #[argh(switch, short = 'n')]
    pub dry_run: bool,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
    /// only these containers (default: all)
    #[argh(positional)]
    pub names: Vec<String>,
}

/// Show a container: desired and applied generation, unit state, leader,
/// addresses, last activation and what apply would do.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "status")]
pub struct StatusArgs {
    /// show debug messages (as -v before the command)
    #[argh(switch, short = 'v')]
    pub verbose: bool,
    /// container name
    #[argh(positional)]
    pub name: String,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// Import a classic NixOS container (/etc/nixos-containers/NAME.conf, state in
/// /var/lib/nixos-containers/NAME) as an imperative container. See
/// docs/migration.md.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "import-classic")]
pub struct ImportClassicArgs {
    /// show debug messages (as -v before the command)
    #[argh(switch, short = 'v')]
    pub verbose: bool,
    /// container name
    #[argh(positional)]
    pub name: String,
    /// move (rename) the classic state directory to /var/lib/machines/NAME
    #[argh(switch)]
    pub move_state: bool,
    /// import even when some settings cannot be carried over (they are dropped)
    #[argh(switch)]
    pub force: bool,
    /// start it after importing
    #[argh(switch)]
    pub start: bool,
    /// give it a user namespace (PrivateUsers=pick); without this flag it
    /// keeps classic's PRIVATE_USERS (off unless it was "pick")
    #[argh(switch)]
    pub user_namespacing: bool,
    /// print the result as JSON
    #[argh(switch)]
    pub json: bool,
}

/// Check that this host can run containers: root, systemd, the generator
/// installed and loaded, systemd-networkd with the generated files in effect
/// for every running container, IPv4 forwarding, the Nix version. Each
/// problem is printed with its fix; the exit status is 1 when something is
/// wrong (warnings alone keep it 0).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "doctor")]
pub struct DoctorArgs {
    /// show debug messages (as -v before the command)
    #[argh(switch, short = 'v')]
    pub verbose: bool,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}
