//! Copies under a new name, as cp and scp make them: the destination is
//! the new name unless it is an existing directory, ends with `/`, or
//! takes several sources.

use super::{assert_exit, configure_nas, put_local, put_remote, remote_file, run, server};

#[test]
fn put_names_the_copy_unless_the_destination_is_a_directory() {
    let server = server(&[]);
    configure_nas(&server, "");
    put_local(&server, "a.txt", b"alpha");
    assert_exit(&run(&server, &["put", "a.txt", "nas:b.txt"]), 0, &[]);
    assert_eq!(remote_file(&server, "b.txt"), b"alpha");
    assert!(!server.root().join("a.txt").exists());
    // Into an existing directory, under its own name.
    std::fs::create_dir_all(server.root().join("d")).unwrap();
    assert_exit(&run(&server, &["put", "a.txt", "nas:d"]), 0, &[]);
    assert_eq!(remote_file(&server, "d/a.txt"), b"alpha");
    // A name ending with / is a directory, created.
    assert_exit(&run(&server, &["put", "a.txt", "nas:new/"]), 0, &[]);
    assert_eq!(remote_file(&server, "new/a.txt"), b"alpha");
    // A new name in a new directory.
    assert_exit(&run(&server, &["put", "a.txt", "nas:sub/c.txt"]), 0, &[]);
    assert_eq!(remote_file(&server, "sub/c.txt"), b"alpha");
    // Several sources make a directory of the destination.
    put_local(&server, "b.txt", b"beta");
    assert_exit(
        &run(&server, &["put", "a.txt", "b.txt", "nas:many"]),
        0,
        &[],
    );
    assert_eq!(remote_file(&server, "many/b.txt"), b"beta");
    // An existing file under the new name is refused without --force.
    put_remote(&server, "taken.txt", b"mine");
    assert_exit(
        &run(&server, &["put", "a.txt", "nas:taken.txt"]),
        1,
        &["exists"],
    );
    assert_eq!(remote_file(&server, "taken.txt"), b"mine");
    assert_exit(
        &run(&server, &["put", "--force", "a.txt", "nas:taken.txt"]),
        0,
        &[],
    );
    assert_eq!(remote_file(&server, "taken.txt"), b"alpha");
}

#[test]
fn get_names_the_copy_unless_the_destination_is_a_directory() {
    let server = server(&[]);
    configure_nas(&server, "");
    put_remote(&server, "a.txt", b"alpha");
    let local = |p: &str| server.sandbox.path().join(p);
    assert_exit(&run(&server, &["get", "nas:a.txt", "./b.txt"]), 0, &[]);
    assert_eq!(std::fs::read(local("b.txt")).unwrap(), b"alpha");
    assert!(!local("a.txt").exists());
    std::fs::create_dir(local("d")).unwrap();
    assert_exit(&run(&server, &["get", "nas:a.txt", "d"]), 0, &[]);
    assert_eq!(std::fs::read(local("d/a.txt")).unwrap(), b"alpha");
    assert_exit(&run(&server, &["get", "nas:a.txt", "fresh/"]), 0, &[]);
    assert_eq!(std::fs::read(local("fresh/a.txt")).unwrap(), b"alpha");
    assert_exit(&run(&server, &["get", "nas:a.txt", "deep/c.txt"]), 0, &[]);
    assert_eq!(std::fs::read(local("deep/c.txt")).unwrap(), b"alpha");
}

#[test]
fn a_tree_is_copied_under_a_new_name_both_ways() {
    let server = server(&[]);
    configure_nas(&server, "");
    put_local(&server, "photos/a.jpg", b"a");
    put_local(&server, "photos/raw/b.raw", b"b");
    assert_exit(&run(&server, &["put", "-r", "photos", "nas:pics"]), 0, &[]);
    assert_eq!(remote_file(&server, "pics/a.jpg"), b"a");
    assert_eq!(remote_file(&server, "pics/raw/b.raw"), b"b");
    assert!(!server.root().join("photos").exists());
    assert_exit(
        &run(&server, &["get", "-r", "nas:pics", "restored"]),
        0,
        &[],
    );
    let restored = server.sandbox.path().join("restored");
    assert_eq!(std::fs::read(restored.join("raw/b.raw")).unwrap(), b"b");
    assert!(!restored.join("pics").exists());
}
