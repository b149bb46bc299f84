//! Running containers seen through `/proc`: their init processes and the
//! addresses of their network namespaces, read without entering them and
//! without asking machined (whose `machinectl list --max-addresses=all` forks
//! into every container: 370 ms with 100 running; this takes a few).
//!
//! What a container controls here is only what the kernel writes about its
//! network namespace (`/proc/PID/net/fib_trie`, `/proc/PID/net/if_inet6`); it is
//! parsed strictly and only shown.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv6Addr;

/// A process as `/proc/PID/stat` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub pid: i32,
    pub ppid: i32,
    /// Its `comm` (the executable's name, at most 15 bytes).
    pub comm: String,
    /// Its state letter (`R`, `S`, `Z` for a zombie, …).
    pub state: char,
}

/// The process `pid`, unless it is gone.
pub fn process(pid: i32) -> Option<Process> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let mut fields = stat[close + 1..].split_whitespace();
    let state = fields.next().and_then(|f| f.chars().next()).unwrap_or('?');
    let ppid = fields.next().and_then(|f| f.parse().ok()).unwrap_or(0);
    Some(Process {
        pid,
        ppid,
        comm: stat[open + 1..close].to_string(),
        state,
    })
}

/// Every process in `/proc` (of this PID namespace).
pub fn processes() -> Vec<Process> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(process)
        .collect()
}

/// The `--machine=NAME` of a process's command line.
pub fn machine_arg(pid: i32) -> Option<String> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    cmdline
        .split(|b| *b == 0)
        .filter_map(|a| std::str::from_utf8(a).ok())
        .find_map(|a| a.strip_prefix("--machine="))
        .map(str::to_owned)
}

/// The network namespace of `pid` (`net:[…]`).
pub fn netns(pid: i32) -> Option<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/net")).ok()
}

/// The init process of every running `systemd-nspawn --machine=NAME` (both
/// the template's and our `ExecStart=`), by name: nspawn's child in a
/// network namespace other than nspawn's own.
pub fn container_inits() -> BTreeMap<String, i32> {
    let procs = processes();
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for p in &procs {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let mut out = BTreeMap::new();
    for p in &procs {
        if p.comm != "systemd-nspawn" {
            continue;
        }
        let Some(name) = machine_arg(p.pid) else {
            continue;
        };
        let own = netns(p.pid);
        let init = children
            .get(&p.pid)
            .into_iter()
            .flatten()
            .copied()
            .find(|c| netns(*c).is_some_and(|n| Some(&n) != own.as_ref()));
        if let Some(init) = init {
            out.insert(name, init);
        }
    }
    out
}

/// The global IPv4 addresses of the network namespace `pid` is in: its
/// `LOCAL` routes in `/proc/PID/net/fib_trie`, without 127/8.
pub fn ipv4_addresses(pid: i32) -> Vec<String> {
    parse_net_file(pid, "fib_trie", parse_fib_trie)
}

/// `/proc/PID/net/FILE` as `parse` reads it; nothing where it cannot be read
/// (the process is gone).
fn parse_net_file(pid: i32, file: &str, parse: fn(&str) -> Vec<String>) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/net/{file}"))
        .map_or_else(|_| Vec::new(), |t| parse(&t))
}

fn parse_fib_trie(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut last = "";
    for line in text.lines() {
        let t = line.trim_start_matches([' ', '|', '+', '-']).trim();
        if line.contains("/32 host LOCAL") {
            if !last.is_empty()
                && !last.starts_with("127.")
                && last.parse::<std::net::Ipv4Addr>().is_ok()
                && !out.iter().any(|a| a == last)
            {
                out.push(last.to_string());
            }
        } else if t.chars().next().is_some_and(|c| c.is_ascii_digit()) {
            last = t.split_whitespace().next().unwrap_or("");
        }
    }
    out
}

/// The IPv6 addresses of the network namespace `pid` is in, from
/// `/proc/PID/net/if_inet6`: global ones, then link-local ones with `%IFINDEX`
/// (as machined gives them), never loopback.
pub fn ipv6_addresses(pid: i32) -> Vec<String> {
    parse_net_file(pid, "if_inet6", parse_if_inet6)
}

fn parse_if_inet6(text: &str) -> Vec<String> {
    let (mut global, mut link) = (Vec::new(), Vec::new());
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(hex), Some(index), Some(scope)) = (f.first(), f.get(1), f.get(3)) else {
            continue;
        };
        let (Ok(bits), Ok(index)) = (
            u128::from_str_radix(hex, 16),
            u32::from_str_radix(index, 16),
        ) else {
            continue;
        };
        if hex.len() != 32 {
            continue;
        }
        match *scope {
            "00" => global.push(Ipv6Addr::from(bits).to_string()),
            "20" => link.push(format!("{}%{index}", Ipv6Addr::from(bits))),
            _ => {}
        }
    }
    global.extend(link);
    global
}

/// The addresses of every running container (IPv4 first), by name.
pub fn container_addresses() -> BTreeMap<String, Vec<String>> {
    container_inits()
        .into_iter()
        .map(|(name, pid)| {
            let mut a = ipv4_addresses(pid);
            a.extend(ipv6_addresses(pid));
            (name, a)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fib_trie_local_addresses() {
        let text = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n     +-- 10.108.163.56/30 2 0 2\n        |-- 10.108.163.56\n           /30 link UNICAST\n        |-- 10.108.163.58\n           /32 host LOCAL\n     +-- 127.0.0.0/8 2 0 2\n        |-- 127.0.0.1\n           /32 host LOCAL\nLocal:\n  +-- 10.108.163.56/30\n        |-- 10.108.163.58\n           /32 host LOCAL\n";
        assert_eq!(parse_fib_trie(text), vec!["10.108.163.58"]);
        assert_eq!(
            parse_fib_trie("garbage\n/32 host LOCAL\n"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn if_inet6_global_addresses() {
        let text = "00000000000000000000000000000001 01 80 10 80       lo\n\
                    fd1a027ad3c13c5e0000000000000002 02 40 00 80    host0\n\
                    fe80000000000000fc0df8fffe01c261 02 40 20 80    host0\n\
                    nonsense\n";
        assert_eq!(
            parse_if_inet6(text),
            vec!["fd1a:27a:d3c1:3c5e::2", "fe80::fc0d:f8ff:fe01:c261%2"]
        );
    }

    #[test]
    fn this_process_as_proc_stat_says() {
        let me = process(std::process::id() as i32).unwrap();
        assert_eq!(me.ppid, std::os::unix::process::parent_id() as i32);
        assert!(!me.comm.is_empty() && !me.comm.contains(')'));
        assert!(me.state.is_ascii_uppercase() && me.state != 'Z', "{me:?}");
        assert!(processes().iter().any(|p| p.pid == me.pid));
        assert_eq!(process(-1), None);
    }

    #[test]
    fn our_own_process_is_no_container() {
        // No systemd-nspawn --machine= among this test's ancestors' children
        // that matters here: the scan must not fail.
        let _ = container_inits();
        assert!(ipv4_addresses(std::process::id() as i32)
            .iter()
            .all(|a| !a.starts_with("127.")));
    }
}
