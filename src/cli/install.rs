//! What installing ferry needs besides the binary: shell completions
//! (`ferry completions bash`) and manual pages (`ferry man`), generated from
//! the clap definition that also makes `--help`, so they cannot drift from
//! it. Each is rendered whole before a byte is written, so a closed stdout
//! is an error `report` handles, never a panic in a generator.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory};
use clap_complete::Shell;
use ferry::client::Error;

use super::Cli;

/// `ferry completions SHELL`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_name = "SHELL")]
    shell: Shell,
}

/// `ferry man [COMMAND]`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// The command whose page to print, e.g. `serve` for ferry-serve(1)
    /// [default: ferry(1), which lists every command].
    #[arg(value_name = "COMMAND")]
    command: Option<String>,

    /// Write every page (ferry.1, ferry-serve.1, ...) into DIR instead,
    /// e.g. ~/.cargo/share/man/man1, where man finds pages for programs
    /// in ~/.cargo/bin.
    #[arg(long, value_name = "DIR", conflicts_with = "command")]
    to: Option<PathBuf>,
}

/// Prints the completion script for `args.shell` on stdout.
pub fn completions(args: &CompletionsArgs) -> Result<(), Error> {
    print(&completion_script(args.shell))
}

/// Prints the manual page, roff, on stdout, or writes them all.
pub fn man(args: &ManArgs) -> Result<(), Error> {
    match &args.to {
        Some(dir) => write_man_pages(dir),
        None => print(&man_page(args.command.as_deref())?),
    }
}

/// ferry.1 and ferry-COMMAND.1 for each command, into `dir`.
fn write_man_pages(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir)?;
    let ferry = Cli::command().disable_help_subcommand(true);
    clap_mangen::generate_to(ferry, dir).map_err(|err| {
        Error::Usage(format!(
            "cannot write manual pages into {}: {err}",
            dir.display()
        ))
    })
}

fn completion_script(shell: Shell) -> Vec<u8> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "ferry", &mut script);
    script
}

/// ferry(1), or ferry-COMMAND(1) for `command`.
fn man_page(command: Option<&str>) -> Result<Vec<u8>, Error> {
    // Building the whole command gives each subcommand its display name
    // (`ferry-serve`) and the global options it accepts.
    let mut ferry = Cli::command().disable_help_subcommand(true);
    ferry.build();
    let page = match command {
        None => ferry,
        Some(name) => ferry.find_subcommand(name).cloned().ok_or_else(|| {
            let names: Vec<&str> = ferry.get_subcommands().map(|c| c.get_name()).collect();
            Error::Usage(format!(
                "no command `{name}`; pages exist for: {}",
                names.join(", ")
            ))
        })?,
    };
    let mut roff = Vec::new();
    clap_mangen::Man::new(page).render(&mut roff)?;
    Ok(roff)
}

fn print(bytes: &[u8]) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_cover_every_command_in_each_shell() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let script = String::from_utf8(completion_script(shell)).unwrap();
            for command in ["serve", "put", "get", "exec", "completions", "man"] {
                assert!(script.contains(command), "{shell}: no {command}");
            }
        }
    }

    #[test]
    fn a_commands_page_is_named_after_it_and_has_its_flags() {
        let page = String::from_utf8(man_page(Some("serve")).unwrap()).unwrap();
        assert!(
            page.starts_with(".ie \\n(.g .ds Aq"),
            "roff: {}",
            &page[..40]
        );
        assert!(page.contains(".TH ferry-serve 1"), "{page}");
        assert!(page.contains("max\\-connections"), "{page}");
    }

    #[test]
    fn an_unknown_command_has_no_page_and_the_error_lists_those_that_do() {
        let err = man_page(Some("serv")).unwrap_err();
        assert!(matches!(err, Error::Usage(_)), "{err}");
        assert!(err.to_string().contains("serve, echo"), "{err}");
    }
}
