//! Getting ferry onto a machine: what `--version`, `ferry completions` and
//! `ferry man` print. One file per concern.

mod generated;
