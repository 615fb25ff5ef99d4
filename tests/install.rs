//! Getting ferry onto a machine: what `--version`, `ferry completions` and
//! `ferry man` print, and the systemd unit of `ferry serve --systemd-unit`.
//! One file per concern.

mod generated;
mod systemd;
