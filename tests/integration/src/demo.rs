//! The README's "main job": a throwaway host, two example containers (one
//! veth, one in a zone), started, shown, cleaned up.

use anyhow::{Context as _, Result};

use crate::fixtures::{entry, zone, Sys};
use crate::host::{secs, HostOpts};
use crate::probe;
use crate::scenarios::unit;
use crate::suite::Suite;

pub fn demo(s: &Suite) -> Result<()> {
    println!("== building two example NixOS systems with Nix");
    let web_sys = s.fx.system(&Sys::new("demo-web").http(80))?;
    let db_sys = s.fx.system(&Sys::new("demo-db"))?;
    println!("   web: {web_sys}\n   db:  {db_sys}");

    println!("== booting a throwaway systemd host (systemd-nspawn -D / --volatile=yes -b)");
    let h = s.host("demo", HostOpts::default())?;

    println!("== registering the containers");
    let mut web = entry("web", &web_sys);
    web["forwardPorts"] =
        serde_json::json!([{ "protocol": "tcp", "hostPort": 8080, "containerPort": 80 }]);
    let mut db = entry("db", &db_sys);
    db["network"] = serde_json::json!({ "mode": "zone", "zone": "backend" });
    h.write_zone(&zone("backend"))?;
    h.write_entry(&web)?;
    h.write_entry(&db)?;
    for name in ["web", "db"] {
        println!(
            "--- /etc/nixos-nspawn/containers/{name}.json\n{}",
            h.read(&format!("/etc/nixos-nspawn/containers/{name}.json"))?
        );
    }
    h.daemon_reload()?;

    println!("== starting them (systemctl start systemd-nspawn@web systemd-nspawn@db)");
    for (name, how) in [
        ("web", "derived from its name, passed as a credential"),
        ("db", "by DHCP from the zone's bridge"),
    ] {
        let t = probe::time_start(&h, name, true, secs(60))?;
        let (took, addr) = t.address.expect("asked for");
        println!(
            "   {name}: systemctl start returned after {:.2} s, address {addr} on host0 ({how}) after {:.2} s",
            t.start.as_secs_f64(),
            took.as_secs_f64()
        );
    }

    println!("== machinectl list");
    print!("{}", h.ok(&["machinectl", "list", "--no-pager"])?);
    println!("== networkctl list (test host)");
    print!("{}", h.ok(&["networkctl", "list", "--no-pager"])?);
    for name in ["web", "db"] {
        println!("== addresses of {name} (ip -4 addr show host0, inside)");
        print!(
            "{}",
            h.in_container(
                name,
                &["ip", "-4", "-brief", "addr", "show", "dev", "host0"]
            )?
            .ok()?
        );
    }
    if let Ok(ve) = h.host_ipv4("ve-web") {
        if let Some(a) = ve.first() {
            let url = format!("http://{}:8080/", crate::host::addr(a));
            let out = h.exec(&["curl", "-s", "-m", "5", &url])?;
            println!(
                "== curl {url} (port 8080 forwarded to web:80) → {}",
                out.stdout.trim()
            );
        }
    }
    println!("== rendered units");
    for (label, path) in [
        (
            "drop-in",
            format!(
                "/run/systemd/generator/{}.d/50-nixos-nspawn.conf",
                unit("web")
            ),
        ),
        ("nspawn", "/run/systemd/nspawn/web.nspawn".into()),
        (
            "network",
            "/run/systemd/network/20-nixos-nspawn-ve-web.network".into(),
        ),
        ("nspawn", "/run/systemd/nspawn/db.nspawn".into()),
        (
            "network",
            "/run/systemd/network/20-nixos-nspawn-vz-backend.network".into(),
        ),
    ] {
        println!("--- {label}: {path}");
        print!(
            "{}",
            h.read(&path)
                .with_context(|| format!("{path} was not rendered"))?
        );
    }
    println!("== systemctl status systemd-nspawn@web (head)");
    let st = h.exec(&["systemctl", "status", "--no-pager", "-n", "0", &unit("web")])?;
    println!(
        "{}",
        st.stdout.lines().take(12).collect::<Vec<_>>().join("\n")
    );
    println!("== cleaning up");
    Ok(())
}
