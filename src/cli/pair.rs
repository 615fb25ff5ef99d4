//! `ferry invite` on the server's machine and `ferry pair` on the other: a
//! second machine gets the server's fingerprint and a token of its own
//! without a secret copied by hand and without trusting a first use.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use clap::Args;
use ferry::client::known_hosts::KnownHosts;
use ferry::client::pair::Code;
use ferry::client::pair::Pairing;
use ferry::client::Error;
use ferry::client::{Endpoint, Fingerprint};
use ferry::server::tokens::Limits;

use super::GlobalArgs;

/// `ferry invite` arguments.
#[derive(Debug, Args)]
pub struct InviteArgs {
    /// The name the paired machine gets on this server [default: the name
    /// it asks for].
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// The paired machine may only read: no put, mkdir, rm, exec or shell.
    #[arg(long)]
    read_only: bool,
    /// The paired machine may not run commands (exec, shell).
    #[arg(long)]
    no_exec: bool,
    /// The paired machine sees only this directory beneath the root.
    #[arg(long, value_name = "DIR")]
    root_subdir: Option<String>,
    /// The server's state directory, as for `ferry serve --state`.
    #[arg(long, value_name = "DIR", env = "FERRY_STATE")]
    state: Option<PathBuf>,
    /// The address the other machine reaches this server at, for the
    /// command printed [default: this machine's name, port 9001].
    #[arg(long, value_name = "HOST:PORT")]
    address: Option<String>,
}

/// `ferry pair` arguments.
#[derive(Debug, Args)]
pub struct PairArgs {
    /// The server, HOST[:PORT] (port 9001 if left out); with --ssh,
    /// [USER@]HOST.
    #[arg(value_name = "HOST[:PORT]")]
    host: String,
    /// The code `ferry invite` printed on the server's machine.
    #[arg(value_name = "CODE", required_unless_present = "ssh")]
    code: Option<String>,
    /// The name this machine keeps the server under (its token file, and
    /// its host entry) [default: the server's host name].
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// No code: log in with ssh to HOST and make a token there with
    /// `ferry tokens add` (the server's machine must have ferry on PATH).
    #[arg(long, conflicts_with = "code")]
    ssh: bool,
    /// With --ssh: the port ferry serves on.
    #[arg(long, value_name = "PORT", default_value_t = 9001, requires = "ssh")]
    port: u16,
}

/// This machine's name, for defaults.
fn hostname() -> String {
    let name = rustix::system::uname();
    name.nodename().to_string_lossy().into_owned()
}

/// Runs `ferry invite`.
pub fn invite(args: InviteArgs, global: &GlobalArgs) -> Result<(), Error> {
    let state = match args.state {
        Some(dir) => dir,
        None => ferry::client::default_state_dir().ok_or_else(|| {
            Error::Usage("HOME is not set; pass --state DIR for the server's state".into())
        })?,
    };
    if !state.join(ferry::server::identity::CERT_FILE).exists() {
        return Err(Error::Usage(format!(
            "no server state in {}: start `ferry serve` first (or pass its --state DIR)",
            state.display()
        )));
    }
    let limits = Limits {
        read_only: args.read_only,
        no_exec: args.no_exec,
        root_subdir: args.root_subdir,
    };
    let now = chrono::Utc::now().timestamp();
    let code =
        ferry::server::pairing::invite(&state, args.name, limits, now).map_err(Error::Usage)?;
    let address = args
        .address
        .unwrap_or_else(|| format!("{}:9001", hostname()));
    let minutes = ferry::server::INVITE_TTL.as_secs() / 60;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{code}")?;
    if !global.quiet {
        eprintln!(
            "ferry: pairing code {code}: valid {minutes} minutes, for one machine; on it, run:\n  \
             ferry pair {address} {code}"
        );
    }
    out.flush()?;
    Ok(())
}

/// Runs `ferry pair`.
pub async fn pair(args: PairArgs, global: &GlobalArgs) -> Result<(), Error> {
    // This machine's name on the server, unless the invite chose one.
    let asked = hostname();
    let (server, pairing) = if args.ssh {
        let (server, pairing) = pair_over_ssh(&args.host, args.port, &asked).await?;
        (server, pairing)
    } else {
        let server: Endpoint = with_default_port(&args.host)
            .parse()
            .map_err(|err| Error::Usage(format!("{}: {err}", args.host)))?;
        let code = Code::parse(args.code.as_deref().unwrap_or_default()).map_err(Error::Usage)?;
        let options = ferry::client::ClientOptions {
            plaintext: global.plaintext,
            ..ferry::client::ClientOptions::new(server.clone())
        };
        let pairing = ferry::client::pair::pair(&options, &code, Some(&asked)).await?;
        (server, pairing)
    };
    let alias = match args.name {
        Some(alias) => alias,
        None => host_of(&server),
    };
    ferry::client::config::check_host_name(&alias).map_err(Error::Usage)?;
    let token_file = store(&server, &alias, &pairing)?;
    let mut config = global.client_config()?;
    let entry = ferry::client::config::HostEntry {
        token_file: Some(token_file.clone()),
        fingerprint: Some(pairing.fingerprint),
        ..ferry::client::config::HostEntry::new(server.clone())
    };
    config.add_host(&alias, entry)?;
    config.save()?;
    if !global.quiet {
        eprintln!(
            "ferry: paired with {server} (as {:?} there): pinned {}, saved this machine's token in {} and the host {alias:?} in {}",
            pairing.name,
            pairing.fingerprint,
            token_file.display(),
            config.path().display()
        );
        eprintln!("ferry: try: ferry ls {alias}:");
    }
    Ok(())
}

/// `HOST` as `HOST:9001`; `HOST:PORT` and `[V6]:PORT` as given.
fn with_default_port(host: &str) -> String {
    let has_port = match host.rsplit_once(':') {
        Some((before, port)) => {
            port.parse::<u16>().is_ok() && (!before.contains(':') || before.ends_with(']'))
        }
        None => false,
    };
    if has_port {
        host.to_string()
    } else if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:9001")
    } else {
        format!("{host}:9001")
    }
}

/// The host part of a TCP endpoint, as a name to keep it under.
fn host_of(server: &Endpoint) -> String {
    match server {
        Endpoint::Tcp { host, .. } | Endpoint::Quic { host, .. } => {
            host.trim_matches(['[', ']']).replace(':', "_")
        }
        Endpoint::Unix(path) => path.display().to_string().replace('/', "_"),
    }
}

/// Pins the server and saves the token (mode 0600) under the client's
/// config directory as `tokens/ALIAS.token`; returns the token file.
fn store(server: &Endpoint, alias: &str, pairing: &Pairing) -> Result<PathBuf, Error> {
    let known_hosts = ferry::client::known_hosts::default_path().ok_or_else(|| {
        Error::Usage("neither XDG_CONFIG_HOME nor HOME is set: nowhere to keep the pin".into())
    })?;
    KnownHosts::new(known_hosts.clone()).pin(&server.to_string(), pairing.fingerprint)?;
    let dir = known_hosts
        .parent()
        .map(|config| config.join("tokens"))
        .unwrap_or_else(|| PathBuf::from("tokens"));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    let path = dir.join(format!("{alias}.token"));
    write_private(&path, format!("{}\n", pairing.token).as_bytes())?;
    Ok(path)
}

/// Writes `contents` to `path`, mode 0600, through a rename.
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// `ferry pair --ssh [USER@]HOST`: runs `ferry tokens add NAME --json`
/// there over ssh, which prints the token and the fingerprint; ssh's own
/// host keys vouch for the answer, so nothing is trusted on first use.
async fn pair_over_ssh(target: &str, port: u16, name: &str) -> Result<(Endpoint, Pairing), Error> {
    if target.starts_with('-') {
        return Err(Error::Usage(format!("{target:?} is not a host")));
    }
    let output = tokio::process::Command::new("ssh")
        .args([target, "--", "ferry", "tokens", "add", name, "--json"])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .await
        .map_err(|err| Error::Usage(format!("cannot run ssh: {err}")))?;
    if !output.status.success() {
        return Err(Error::Usage(format!(
            "`ssh {target} ferry tokens add {name} --json` failed ({}); is ferry on the PATH there, \
             and its server started?",
            output.status
        )));
    }
    #[derive(serde::Deserialize)]
    struct Added {
        name: String,
        token: String,
        fingerprint: String,
    }
    let added: Added = serde_json::from_slice(&output.stdout).map_err(|err| {
        Error::Protocol(format!(
            "unexpected answer from `ferry tokens add` over ssh: {err}"
        ))
    })?;
    let fingerprint: Fingerprint = added
        .fingerprint
        .parse()
        .map_err(|err| Error::Protocol(format!("bad fingerprint over ssh: {err}")))?;
    let host = target.rsplit_once('@').map_or(target, |(_, host)| host);
    let server: Endpoint = with_default_port(&format!("{host}:{port}"))
        .parse()
        .map_err(|err| Error::Usage(format!("{host}: {err}")))?;
    Ok((
        server,
        Pairing {
            fingerprint,
            name: added.name,
            token: added.token,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_get_the_default_port_unless_they_name_one() {
        assert_eq!(with_default_port("nas"), "nas:9001");
        assert_eq!(with_default_port("nas:7000"), "nas:7000");
        assert_eq!(with_default_port("[::1]:7000"), "[::1]:7000");
        assert_eq!(with_default_port("::1"), "[::1]:9001");
        assert_eq!(with_default_port("127.0.0.1"), "127.0.0.1:9001");
    }
}
