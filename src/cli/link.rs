//! `ferry link`: share links of the HTTP door, made, listed and revoked on
//! the server's machine in its state directory, as `ferry tokens` does for
//! client tokens. A running server reads `links.toml` at each use, so a
//! revoke takes effect at the link's next request.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use ferry::client::Error;
use ferry::server::http::links::{Links, NewLink, ADDRESS_FILE, MAX_LINKS};

use super::output::format_utc;

/// `ferry link` arguments.
#[derive(Debug, Args)]
pub struct LinkArgs {
    /// The file or folder the link grants, beneath the served root.
    #[arg(required_unless_present_any = ["list", "revoke"])]
    path: Option<String>,
    /// How long the link works: seconds, or a number with s, m, h or d
    /// (`1h`, `7d`). Without it the link works until revoked.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    expires: Option<Duration>,
    /// How many downloads (or uploads begun) the link grants; looking at a
    /// folder's listing is not a use.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    uses: Option<u64>,
    /// Let the link upload into its folder (the server needs --http-upload).
    #[arg(long)]
    upload: bool,
    /// List the links: id, path, uses, expiry.
    #[arg(long, conflicts_with_all = ["path", "revoke"])]
    list: bool,
    /// Revoke link ID; its next request is refused.
    #[arg(long, value_name = "ID", conflicts_with = "path")]
    revoke: Option<String>,
    /// The URL the server is reached at, e.g. https://nas.lan:8443
    /// [default: what the server last bound with --http, from its state
    /// directory].
    #[arg(long, value_name = "URL")]
    base_url: Option<String>,
    /// The server's state directory [default: $XDG_STATE_HOME/ferry or
    /// ~/.local/state/ferry], as for `ferry serve --state`.
    #[arg(long, value_name = "DIR", env = "FERRY_STATE")]
    state: Option<PathBuf>,
}

/// Reads `90`, `90s`, `30m`, `1h` or `7d`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c),
        _ => (text, 's'),
    };
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(format!("`{text}`: use s, m, h or d, as in `1h`")),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration; try `1h` or `30m`"))?;
    if n == 0 {
        return Err("a link that expires at once grants nothing".into());
    }
    n.checked_mul(scale)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("`{text}` is too long"))
}

/// Runs `ferry link`.
pub fn run(args: LinkArgs) -> Result<(), Error> {
    let state = match args.state {
        Some(dir) => dir,
        None => ferry::server::default_state_dir().ok_or_else(|| {
            Error::Usage("HOME is not set; pass --state DIR for the server's state".into())
        })?,
    };
    let now = chrono::Utc::now().timestamp();
    let mut out = std::io::stdout().lock();
    if args.list {
        for (id, link) in Links::load(&state)?.links {
            let uses = match link.max_uses {
                Some(max) => format!("{}/{max} uses", link.uses),
                None => format!("{} uses", link.uses),
            };
            let expires = match link.expires {
                Some(t) if t <= now => format!("expired {}", format_utc(t)),
                Some(t) => format!("until {}", format_utc(t)),
                None => "no expiry".into(),
            };
            let upload = if link.upload { "\tupload" } else { "" };
            writeln!(out, "{id}\t{}\t{uses}\t{expires}{upload}", link.path)?;
        }
        return Ok(());
    }
    if let Some(id) = args.revoke {
        return Links::update(&state, |links| {
            links
                .links
                .remove(&id)
                .map(drop)
                .ok_or_else(|| format!("no link has id {id:?}; `ferry link --list` shows them"))
        })
        .map_err(Error::Usage);
    }
    let path = args.path.unwrap_or_default();
    let new = NewLink {
        path: path.trim_end_matches('/').to_string(),
        lasts_secs: args.expires.map(|d| d.as_secs()),
        max_uses: args.uses,
        upload: args.upload,
    };
    let (_id, secret) =
        Links::update(&state, |links| links.add(&new, now, MAX_LINKS)).map_err(Error::Usage)?;
    let base = match args.base_url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => std::fs::read_to_string(state.join(ADDRESS_FILE))
            .map(|text| text.trim().to_string())
            .unwrap_or_default(),
    };
    if base.is_empty() {
        eprintln!(
            "ferry: the server's HTTP address is not known yet (start `ferry serve --http ADDR`, \
             or pass --base-url); the link's path is:"
        );
    }
    writeln!(out, "{base}/s/{secret}/")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_unit() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        for bad in ["", "h", "1x", "-1h", "0", "1.5h", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
