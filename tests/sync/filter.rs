//! `--exclude`, `--include`, `--exclude-from` and `--filter-gitignore`, in
//! both directions: rsync's first-match order and gitignore's globs.

use std::fs;

use super::{local, remote, slash, sync, T1};
use crate::files::{arg, names_in, write_file};
use crate::util::Server;

fn source(server: &Server) -> std::path::PathBuf {
    let src = local(server, "src");
    fs::create_dir_all(src.join("build/out")).unwrap();
    fs::create_dir_all(src.join("docs")).unwrap();
    for name in [
        "a.log",
        "keep.log",
        "main.rs",
        "build/out/x",
        "docs/a.md",
        "docs/b.tmp",
    ] {
        write_file(&src.join(name), name.as_bytes(), 0o644, T1);
    }
    src
}

#[test]
fn include_before_exclude_wins_and_an_excluded_directory_is_not_entered() {
    let server = Server::start(&[]);
    let src = source(&server);
    sync(
        &server,
        &[
            "--include",
            "keep.log",
            "--exclude",
            "*.log",
            "--exclude",
            "/build",
            &slash(&src),
            &remote(&server, "m"),
        ],
    )
    .assert_ok();
    let m = server.root().join("m");
    assert_eq!(names_in(&m), ["docs", "keep.log", "main.rs"]);
    // The other way round: the pull's server walks with the same rules.
    let dest = local(&server, "dest");
    sync(
        &server,
        &["--exclude", "*.md", &remote(&server, "m/"), arg(&dest)],
    )
    .assert_ok();
    assert_eq!(names_in(&dest.join("docs")), ["b.tmp"]);
}

#[test]
fn exclude_from_reads_rsync_style_rules_and_gitignore_files_are_honoured_when_asked() {
    let server = Server::start(&[]);
    let src = source(&server);
    let rules = local(&server, "rules").join("list");
    fs::write(
        &rules,
        "# comment\n+ a.log\n- *.log\n; also a comment\nbuild/\n",
    )
    .unwrap();
    sync(
        &server,
        &[
            "--exclude-from",
            arg(&rules),
            &slash(&src),
            &remote(&server, "m"),
        ],
    )
    .assert_ok();
    assert_eq!(
        names_in(&server.root().join("m")),
        ["a.log", "docs", "main.rs"]
    );

    fs::write(src.join(".gitignore"), "*.tmp\n").unwrap();
    sync(
        &server,
        &["--filter-gitignore", &slash(&src), &remote(&server, "g")],
    )
    .assert_ok();
    assert_eq!(names_in(&server.root().join("g/docs")), ["a.md"]);
    sync(&server, &[&slash(&src), &remote(&server, "h")]).assert_ok();
    assert_eq!(names_in(&server.root().join("h/docs")), ["a.md", "b.tmp"]);

    let bad = sync(
        &server,
        &["--exclude", "", &slash(&src), &remote(&server, "m")],
    );
    bad.assert_code(2).assert_stderr_contains("empty");
}
