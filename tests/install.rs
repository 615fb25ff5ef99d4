//! Getting ferry onto a machine: the README's quick start run on a clean
//! copy of the repository with an empty home, what `--version`, `ferry
//! completions` and `ferry man` print, and the systemd unit of `ferry serve
//! --systemd-unit`. One file per concern.

mod generated;
mod quick_start;
mod systemd;
