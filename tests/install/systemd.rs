//! `ferry serve --systemd-unit`: the unit it prints parses as a unit, runs
//! this binary with the flags given (from the command line, FERRY_* and
//! the config file alike) and absolute paths, hardened; and, where
//! systemd-analyze is installed, systemd itself accepts it.

use std::collections::BTreeMap;

use crate::util::outside_tool;
use crate::util::{Invocation, Run, Sandbox, FERRY};

/// A unit file's settings by section, each key with its values in order,
/// read as systemd reads one: `#` comments and blank lines skipped, every
/// other line a `[Section]` or a `Key=value` inside one.
fn parse_unit(text: &str) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut sections: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut section: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(name.to_string());
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not a setting: {line:?}"));
        assert!(
            key.chars().all(|c| c.is_ascii_alphanumeric()),
            "bad key {key:?}"
        );
        let section = section
            .clone()
            .unwrap_or_else(|| panic!("{line:?} before a section"));
        sections
            .entry(section)
            .or_default()
            .entry(key.to_string())
            .or_default()
            .push(value.to_string());
    }
    sections
}

fn systemd_unit(sandbox: &Sandbox, args: &[&str]) -> Run {
    let mut full = vec!["serve", "--systemd-unit"];
    full.extend_from_slice(args);
    let run = Invocation::new(sandbox, &full).run();
    run.assert_ok();
    run
}

/// The one value of `key` in `[Service]`.
fn service<'a>(unit: &'a BTreeMap<String, BTreeMap<String, Vec<String>>>, key: &str) -> &'a str {
    match unit["Service"].get(key).map(Vec::as_slice) {
        Some([value]) => value,
        other => panic!("Service {key}: {other:?}"),
    }
}

#[test]
fn the_unit_runs_this_binary_as_its_own_user_in_a_sandbox() {
    let sandbox = Sandbox::new();
    let run = systemd_unit(&sandbox, &["--listen", "0.0.0.0:9001", "--allow-exec"]);
    let unit = parse_unit(&run.stdout);
    assert_eq!(
        unit.keys().collect::<Vec<_>>(),
        ["Install", "Service", "Unit"]
    );
    let exe = std::fs::canonicalize(FERRY).unwrap();
    assert_eq!(
        service(&unit, "ExecStart"),
        format!(
            "{} serve --root /var/lib/ferry/share --state /var/lib/ferry/state \
             --listen 0.0.0.0:9001 --allow-exec",
            exe.display()
        )
    );
    for (key, value) in [
        ("User", "ferry"),
        ("StateDirectory", "ferry"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
    ] {
        assert_eq!(service(&unit, key), value, "{key}");
    }
    assert_eq!(
        unit["Service"]["SystemCallFilter"],
        ["@system-service", "~@privileged"]
    );
    assert_eq!(unit["Install"]["WantedBy"], ["multi-user.target"]);
    assert!(
        run.stdout.contains("commands run inside this sandbox"),
        "--allow-exec is noted: {}",
        run.stdout
    );
}

#[test]
fn flags_from_the_environment_and_config_file_are_written_out() {
    let sandbox = Sandbox::new();
    let config = sandbox.path().join("ferry.toml");
    std::fs::write(
        &config,
        "idle-timeout = 60\nlisten = [\"127.0.0.1:9001\"]\n",
    )
    .unwrap();
    let args = [
        "serve",
        "--systemd-unit",
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "unix:sockets/ferry.sock",
    ];
    let run = Invocation::new(&sandbox, &args)
        .env("FERRY_ROOT", "share")
        .env("FERRY_MAX_COMMANDS", "4")
        .env("FERRY_TOKEN", "a-client-token-that-stays-out")
        .run();
    run.assert_ok();
    let unit = parse_unit(&run.stdout);
    let exec = service(&unit, "ExecStart");
    let (root, sockets) = (sandbox.path().join("share"), sandbox.path().join("sockets"));
    assert!(
        exec.contains(&format!("--root {} ", root.display())),
        "a relative root is made absolute: {exec}"
    );
    for flag in [
        &format!("--listen unix:{}/ferry.sock", sockets.display()),
        "--idle-timeout 60",
        "--max-commands 4",
    ] {
        assert!(exec.contains(flag), "{flag} in {exec}");
    }
    assert!(
        !exec.contains("127.0.0.1:9001"),
        "the command line wins: {exec}"
    );
    assert!(!exec.contains("--config"), "{exec}");
    assert!(!run.stdout.contains("a-client-token"), "{}", run.stdout);
    assert_eq!(
        service(&unit, "ReadWritePaths"),
        format!("{} {}", root.display(), sockets.display())
    );
}

#[test]
fn systemd_analyze_verifies_the_unit() {
    let Some(analyze) = outside_tool::program("systemd-analyze", "apt install systemd") else {
        return;
    };
    let sandbox = Sandbox::new();
    let run = systemd_unit(
        &sandbox,
        &["--listen", "0.0.0.0:9001", "--sntp", "0.0.0.0:123"],
    );
    let path = sandbox.path().join("ferry.service");
    std::fs::write(&path, &run.stdout).unwrap();
    // --man=no: ferry-serve(1), which the unit names, is not installed here.
    let output = std::process::Command::new(analyze)
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
