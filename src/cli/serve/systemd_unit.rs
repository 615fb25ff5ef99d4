//! `ferry serve --systemd-unit`: prints a systemd service that runs this
//! binary with the serve flags given now (from the command line, `FERRY_*`
//! variables or `--config`, written out so the unit needs none of them), as
//! a dedicated user, in a sandbox that can write only the served root and
//! the state directory. Nothing here serves, and nothing is written but
//! the unit on stdout and warnings on stderr.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, CommandFactory};
use ferry::server::Endpoint;
use ferry::server::Error;

use super::super::{Cli, GlobalArgs};
use super::ServeArgs;

/// The user the service runs as; `useradd --system ferry` makes it.
const SERVICE_USER: &str = "ferry";

/// systemd creates it for the service (`StateDirectory=ferry`), owned by
/// [`SERVICE_USER`] and writable through the sandbox.
const STATE_DIRECTORY: &str = "/var/lib/ferry";

/// The served root and state directory when `--root` and `--state` are not
/// given: the default `./ferry-share` means nothing to a service.
const DEFAULT_ROOT: &str = "/var/lib/ferry/share";
const DEFAULT_STATE: &str = "/var/lib/ferry/state";

/// Flags that only steer this printing, or are replaced by absolute paths.
const NOT_PASSED_ON: &[&str] = &["config", "systemd_unit", "root", "state"];

/// The global options that mean something to `ferry serve`; the rest (a
/// client's token, server, fingerprint) never go into a unit.
const SERVE_GLOBALS: &[&str] = &["plaintext", "allow_remote_plaintext", "verbose", "quiet"];

/// A directory for unix sockets that systemd makes for the service
/// (`RuntimeDirectory=ferry`), as `/run` is read-only in the sandbox.
const RUNTIME_DIRECTORY: &str = "/run/ferry";

/// Paths that `ProtectHome=yes` and `PrivateTmp=yes` hide from the service.
const HIDDEN_FROM_THE_SERVICE: &[&str] = &["/home", "/root", "/run/user", "/tmp", "/var/tmp"];

/// Everything the unit says that depends on how it was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Unit {
    /// The binary the service runs: this one.
    exe: PathBuf,
    root: PathBuf,
    state: PathBuf,
    /// Serve flags after `--root` and `--state`, one word each.
    flags: Vec<String>,
    /// The directories of unix sockets it listens on, which it must be
    /// able to write.
    socket_dirs: Vec<PathBuf>,
    /// Whether a listener wants a port below 1024, which needs
    /// `CAP_NET_BIND_SERVICE`.
    low_port: bool,
    /// `--drain-timeout`, whole seconds rounded up.
    drain_secs: u64,
    allow_exec: bool,
}

/// Prints the unit for `args` (parsed from `serve`, the serve command's
/// matches) on stdout, and on stderr what would stop it from working.
pub fn print(args: &ServeArgs, global: &GlobalArgs, serve: &ArgMatches) -> Result<(), Error> {
    let cwd = std::env::current_dir()?;
    let given = |id: &str| {
        matches!(
            serve.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    };
    let unit = Unit {
        exe: std::env::current_exe()?,
        root: if given("root") {
            cwd.join(&args.root)
        } else {
            PathBuf::from(DEFAULT_ROOT)
        },
        state: match (&args.state, given("state")) {
            (Some(state), true) => cwd.join(state),
            _ => PathBuf::from(DEFAULT_STATE),
        },
        flags: flags(serve, &cwd)?,
        socket_dirs: endpoints(args)
            .filter_map(|e| match e {
                Endpoint::Unix(path) => cwd.join(path).parent().map(Path::to_path_buf),
                Endpoint::Tcp { .. } | Endpoint::Quic { .. } => None,
            })
            .collect(),
        low_port: endpoints(args).any(|e| matches!(e, Endpoint::Tcp { port, .. } if *port < 1024))
            || args
                .quic
                .iter()
                .any(|text| matches!(text.parse(), Ok(Endpoint::Tcp { port, .. }) if port < 1024)),
        drain_secs: args.drain_timeout.as_secs_f64().ceil() as u64,
        allow_exec: args.allow_exec,
    };
    let text = unit.render()?;
    if !global.quiet {
        for warning in unit.warnings() {
            eprintln!("ferry: warning: {warning}");
        }
    }
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Every address the server would listen on.
fn endpoints(args: &ServeArgs) -> impl Iterator<Item = &Endpoint> {
    let services = &args.services;
    let time = (!services.no_udp_time).then_some(&services.udp_time);
    args.listen
        .iter()
        .chain(&args.seed_compat)
        .chain(&args.seed_compat_udp)
        .chain(time)
        .chain(&services.sntp)
        .chain(&services.udp_echo)
        .chain(&services.tcp_echo)
        .chain(&services.udp_chat)
}

/// The serve flags given on the command line, through `FERRY_*` or in the
/// config file (which arrive as command-line flags), as words: unix socket
/// paths made absolute, since the service runs elsewhere.
fn flags(serve: &ArgMatches, cwd: &Path) -> Result<Vec<String>, Error> {
    let mut ferry = Cli::command();
    ferry.build();
    let command = ferry
        .find_subcommand("serve")
        .expect("ferry has a serve command");
    let mut words = Vec::new();
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        let Some(long) = arg.get_long() else {
            continue;
        };
        if NOT_PASSED_ON.contains(&id) || arg.is_global_set() && !SERVE_GLOBALS.contains(&id) {
            continue;
        }
        if !matches!(
            serve.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let flag = format!("--{long}");
        match arg.get_action() {
            ArgAction::SetTrue if serve.get_flag(id) => words.push(flag),
            ArgAction::Count => {
                words.extend(std::iter::repeat_n(flag, serve.get_count(id).into()));
            }
            action if action.takes_values() => {
                let is_address = arg.get_value_names() == Some(&["ADDR".into()]);
                for raw in serve.get_raw(id).into_iter().flatten() {
                    let value = raw.to_str().ok_or_else(|| {
                        Error::Usage(format!("{flag} {raw:?} is not UTF-8, which a unit must be"))
                    })?;
                    let value = match value.strip_prefix("unix:") {
                        Some(path) if is_address => format!("unix:{}", cwd.join(path).display()),
                        _ => value.to_string(),
                    };
                    words.extend([flag.clone(), value]);
                }
            }
            _ => {}
        }
    }
    Ok(words)
}

impl Unit {
    /// The unit file's text.
    fn render(&self) -> Result<String, Error> {
        let mut exec = vec![
            exec_word(&path_text(&self.exe)?)?,
            "serve".to_string(),
            "--root".to_string(),
            exec_word(&path_text(&self.root)?)?,
            "--state".to_string(),
            exec_word(&path_text(&self.state)?)?,
        ];
        for flag in &self.flags {
            exec.push(exec_word(flag)?);
        }
        let mut writable: Vec<String> = Vec::new();
        for path in [&self.root, &self.state]
            .into_iter()
            .chain(&self.socket_dirs)
        {
            let word = path_word(&path_text(path)?)?;
            let made_by_systemd =
                path.starts_with(STATE_DIRECTORY) || path.as_path() == Path::new(RUNTIME_DIRECTORY);
            if !made_by_systemd && !writable.contains(&word) {
                writable.push(word);
            }
        }
        let runtime_directory = self
            .socket_dirs
            .iter()
            .any(|dir| dir.as_path() == Path::new(RUNTIME_DIRECTORY));
        let capability = if self.low_port {
            "CAP_NET_BIND_SERVICE"
        } else {
            ""
        };

        let mut unit = String::new();
        let u = &mut unit;
        let _ = writeln!(u, "# ferry serve as a hardened systemd service; written by");
        let _ = writeln!(
            u,
            "# `ferry serve --systemd-unit` (see ferry-serve(1)). Install, as root:"
        );
        let _ = writeln!(
            u,
            "#   useradd --system --home-dir {STATE_DIRECTORY} --shell /usr/sbin/nologin {SERVICE_USER}"
        );
        let _ = writeln!(
            u,
            "#   ferry serve ... --systemd-unit > /etc/systemd/system/ferry.service"
        );
        let _ = writeln!(
            u,
            "#   systemctl daemon-reload && systemctl enable --now ferry"
        );
        let _ = writeln!(
            u,
            "# `journalctl -u ferry` shows the fingerprint clients pin."
        );
        let _ = writeln!(u, "[Unit]");
        let _ = writeln!(
            u,
            "Description=ferry: files and commands between your own machines"
        );
        let _ = writeln!(u, "Documentation=man:ferry-serve(1)");
        let _ = writeln!(u, "Wants=network-online.target");
        let _ = writeln!(u, "After=network-online.target");
        let _ = writeln!(u);
        let _ = writeln!(u, "[Service]");
        let _ = writeln!(u, "Type=exec");
        let _ = writeln!(u, "ExecStart={}", exec.join(" "));
        let _ = writeln!(u, "User={SERVICE_USER}");
        let _ = writeln!(u, "Group={SERVICE_USER}");
        let _ = writeln!(u, "# {STATE_DIRECTORY}, made and owned for the service.");
        let _ = writeln!(u, "StateDirectory=ferry");
        let _ = writeln!(u, "StateDirectoryMode=0700");
        if runtime_directory {
            let _ = writeln!(u, "# {RUNTIME_DIRECTORY}, for its unix sockets.");
            let _ = writeln!(u, "RuntimeDirectory=ferry");
        }
        if !writable.is_empty() {
            let _ = writeln!(u, "ReadWritePaths={}", writable.join(" "));
        }
        let _ = writeln!(u, "UMask=0077");
        let _ = writeln!(u, "Restart=on-failure");
        let _ = writeln!(
            u,
            "# --drain-timeout, and a few seconds for the rest of the exit."
        );
        let _ = writeln!(u, "TimeoutStopSec={}", self.drain_secs + 5);
        let _ = writeln!(
            u,
            "# `ferry shell` starts $SHELL, which for {SERVICE_USER} is nologin."
        );
        let _ = writeln!(u, "Environment=SHELL=/bin/sh");
        let _ = writeln!(u);
        let _ = writeln!(
            u,
            "# The sandbox: the server can write only the root and its state,"
        );
        let _ = writeln!(
            u,
            "# sees no home directories and no other process's /tmp, and holds"
        );
        let _ = writeln!(u, "# no privilege.");
        if self.allow_exec {
            let _ = writeln!(
                u,
                "# --allow-exec: commands run inside this sandbox too, as"
            );
            let _ = writeln!(
                u,
                "# {SERVICE_USER}; loosen it here for commands that need more."
            );
        }
        let _ = writeln!(u, "NoNewPrivileges=yes");
        let _ = writeln!(u, "CapabilityBoundingSet={capability}");
        if self.low_port {
            let _ = writeln!(u, "AmbientCapabilities={capability}");
        }
        for setting in HARDENING {
            let _ = writeln!(u, "{setting}");
        }
        let _ = writeln!(u);
        let _ = writeln!(u, "[Install]");
        let _ = writeln!(u, "WantedBy=multi-user.target");
        Ok(unit)
    }

    /// What in this unit would stop the service from starting or serving.
    fn warnings(&self) -> Vec<String> {
        let hidden = |p: &Path| HIDDEN_FROM_THE_SERVICE.iter().any(|h| p.starts_with(h));
        let mut warnings = Vec::new();
        if hidden(&self.exe) {
            warnings.push(format!(
                "the service cannot run {}: its sandbox hides /home, /root and /tmp. Copy the \
                 binary out first (install -m 755 {0} /usr/local/bin/ferry) and run \
                 /usr/local/bin/ferry serve --systemd-unit",
                self.exe.display()
            ));
        }
        let paths = [("--root", &self.root), ("--state", &self.state)]
            .into_iter()
            .chain(self.socket_dirs.iter().map(|dir| ("a unix socket in", dir)));
        for (what, path) in paths {
            if hidden(path) {
                warnings.push(format!(
                    "the service cannot use {what} {}: its sandbox hides /home, /root and \
                     /tmp. Pick a directory elsewhere, such as /srv/ferry (or {RUNTIME_DIRECTORY} \
                     for sockets)",
                    path.display()
                ));
            }
        }
        warnings
    }
}

/// Settings that never depend on the flags; each narrows what the server,
/// and with `--allow-exec` its commands, can reach.
const HARDENING: &[&str] = &[
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "PrivateDevices=yes",
    "PrivateMounts=yes",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectKernelLogs=yes",
    "ProtectControlGroups=yes",
    "ProtectClock=yes",
    "ProtectHostname=yes",
    "ProtectProc=invisible",
    "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces=yes",
    "RestrictRealtime=yes",
    "RestrictSUIDSGID=yes",
    "LockPersonality=yes",
    "MemoryDenyWriteExecute=yes",
    "RemoveIPC=yes",
    "SystemCallArchitectures=native",
    "SystemCallFilter=@system-service",
    "SystemCallFilter=~@privileged",
    "SystemCallErrorNumber=EPERM",
];

fn path_text(path: &Path) -> Result<String, Error> {
    path.to_str().map(str::to_string).ok_or_else(|| {
        Error::Usage(format!(
            "{} is not UTF-8, which a systemd unit must be",
            path.display()
        ))
    })
}

/// A word of `ExecStart=`: `$` doubled (systemd expands variables there).
fn exec_word(text: &str) -> Result<String, Error> {
    Ok(path_word(text)?.replace('$', "$$"))
}

/// A word of a unit's space-separated list: quoted when it holds a space,
/// `%` doubled (systemd's specifiers). A quote, a backslash or a control
/// character would need escapes systemd reads differently per setting, and
/// a newline would start a new setting: such a word is refused.
fn path_word(text: &str) -> Result<String, Error> {
    if let Some(bad) = text
        .chars()
        .find(|c| c.is_control() || *c == '"' || *c == '\\')
    {
        return Err(Error::Usage(format!(
            "{text:?} holds {bad:?}, which this unit cannot carry; use a path or value without it"
        )));
    }
    let text = text.replace('%', "%%");
    if text.is_empty() || text.contains(char::is_whitespace) || text.contains(['\'', ';']) {
        Ok(format!("\"{text}\""))
    } else {
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit() -> Unit {
        Unit {
            exe: "/usr/local/bin/ferry".into(),
            root: DEFAULT_ROOT.into(),
            state: DEFAULT_STATE.into(),
            flags: vec![],
            socket_dirs: vec![],
            low_port: false,
            drain_secs: 10,
            allow_exec: false,
        }
    }

    /// `(section, key, value)` for each setting, as systemd reads a unit:
    /// comments and blank lines skipped, every other line a `[section]` or
    /// a `key=value` inside one.
    fn settings(text: &str) -> Vec<(String, String, String)> {
        let mut section = None;
        let mut out = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = Some(name.to_string());
                continue;
            }
            let (key, value) = line.split_once('=').expect("key=value");
            let section = section.clone().expect("a setting inside a section");
            out.push((section, key.to_string(), value.to_string()));
        }
        out
    }

    fn value(text: &str, key: &str) -> Option<String> {
        settings(text)
            .into_iter()
            .find(|(_, k, _)| k == key)
            .map(|(_, _, v)| v)
    }

    #[test]
    fn the_unit_runs_this_binary_sandboxed_with_absolute_root_and_state() {
        let text = unit().render().unwrap();
        assert_eq!(
            value(&text, "ExecStart").unwrap(),
            "/usr/local/bin/ferry serve --root /var/lib/ferry/share --state /var/lib/ferry/state"
        );
        for (key, expected) in [
            ("User", "ferry"),
            ("StateDirectory", "ferry"),
            ("ProtectSystem", "strict"),
            ("ProtectHome", "yes"),
            ("NoNewPrivileges", "yes"),
            ("PrivateTmp", "yes"),
            ("CapabilityBoundingSet", ""),
            ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
            ("MemoryDenyWriteExecute", "yes"),
            ("TimeoutStopSec", "15"),
        ] {
            assert_eq!(value(&text, key).as_deref(), Some(expected), "{key}");
        }
        let filters: Vec<String> = settings(&text)
            .into_iter()
            .filter(|(_, key, _)| key == "SystemCallFilter")
            .map(|(_, _, v)| v)
            .collect();
        assert_eq!(filters, ["@system-service", "~@privileged"]);
        // Root and state are inside the state directory systemd makes.
        assert_eq!(value(&text, "ReadWritePaths"), None);
        assert_eq!(value(&text, "AmbientCapabilities"), None);
        let sections: Vec<String> = settings(&text).into_iter().map(|(s, _, _)| s).collect();
        assert!(sections.contains(&"Install".to_string()));
    }

    #[test]
    fn a_root_elsewhere_is_made_writable_and_a_low_port_gets_its_capability() {
        let text = Unit {
            root: "/srv/my share".into(),
            low_port: true,
            flags: vec!["--listen".into(), "0.0.0.0:123".into()],
            ..unit()
        }
        .render()
        .unwrap();
        assert_eq!(value(&text, "ReadWritePaths").unwrap(), "\"/srv/my share\"");
        assert!(value(&text, "ExecStart").unwrap().ends_with(
            "--root \"/srv/my share\" --state /var/lib/ferry/state --listen 0.0.0.0:123"
        ));
        assert_eq!(
            value(&text, "CapabilityBoundingSet").unwrap(),
            "CAP_NET_BIND_SERVICE"
        );
        assert_eq!(
            value(&text, "AmbientCapabilities").unwrap(),
            "CAP_NET_BIND_SERVICE"
        );
    }

    #[test]
    fn socket_directories_are_writable_and_run_ferry_is_made_for_them() {
        let text = Unit {
            socket_dirs: vec![
                "/run/ferry".into(),
                "/srv/sockets".into(),
                "/srv/sockets".into(),
            ],
            ..unit()
        }
        .render()
        .unwrap();
        assert_eq!(value(&text, "RuntimeDirectory").as_deref(), Some("ferry"));
        assert_eq!(
            value(&text, "ReadWritePaths").as_deref(),
            Some("/srv/sockets")
        );
        let without = unit().render().unwrap();
        assert_eq!(value(&without, "RuntimeDirectory"), None);
    }

    #[test]
    fn words_that_systemd_would_expand_or_split_are_escaped_or_refused() {
        assert_eq!(exec_word("/srv/100%").unwrap(), "/srv/100%%");
        assert_eq!(exec_word("/srv/$HOME").unwrap(), "/srv/$$HOME");
        assert_eq!(path_word("/srv/$HOME").unwrap(), "/srv/$HOME");
        assert_eq!(path_word("").unwrap(), "\"\"");
        for bad in ["/srv/a\nExecStartPre=/bin/evil", "/srv/\"x", "/srv/a\\b"] {
            assert!(matches!(path_word(bad), Err(Error::Usage(_))), "{bad:?}");
        }
    }

    #[test]
    fn paths_the_sandbox_hides_are_warned_about() {
        assert!(unit().warnings().is_empty());
        let warnings = Unit {
            exe: "/home/me/.cargo/bin/ferry".into(),
            root: "/root/share".into(),
            ..unit()
        }
        .warnings();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("install -m 755 /home/me/.cargo/bin/ferry"));
        assert!(warnings[1].contains("--root /root/share"));
        let socket = Unit {
            socket_dirs: vec!["/tmp".into()],
            ..unit()
        };
        assert!(socket.warnings()[0].contains("a unix socket in /tmp"));
    }

    #[test]
    fn with_allow_exec_the_unit_says_commands_run_in_the_sandbox() {
        let text = Unit {
            allow_exec: true,
            ..unit()
        }
        .render()
        .unwrap();
        assert!(text.contains("# --allow-exec: commands run inside this sandbox too"));
    }
}
