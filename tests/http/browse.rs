//! Browsing and downloading: listings as a page and as JSON, sorting,
//! names shown as text, downloads with their type, validators and ranges,
//! folders as tar, and paths that try to leave the share.

use std::fs;
use std::io::{Read, Write};

use super::{authorized, start};

#[test]
fn a_listing_shows_names_as_text_and_sorts_without_javascript() {
    let server = start(&[]);
    let root = server.root();
    fs::write(root.join("<script>alert(1)<script>.txt"), b"x").unwrap();
    fs::write(root.join("big"), vec![7u8; 5000]).unwrap();
    fs::create_dir(root.join("sub")).unwrap();
    fs::write(root.join(".ferry-partial-0123"), b"half").unwrap();
    let client = authorized(&server);
    let page = client.get("/files/");
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").starts_with("text/html"));
    assert!(page
        .header("content-security-policy")
        .contains("script-src 'self'"));
    let text = page.text();
    assert!(!text.contains("<script>alert"), "{text}");
    assert!(
        text.contains("&lt;script&gt;alert(1)&lt;script&gt;.txt"),
        "{text}"
    );
    assert!(
        !text.contains("ferry-partial"),
        "partial files are never listed"
    );
    assert!(text.contains("href=\"sub/\""));
    // Sorting is a link, so it works with JavaScript off.
    assert!(text.contains("?sort=size&amp;order=asc"));
    let by_size = client.get("/files/?sort=size&order=desc").text();
    let big = by_size.find(">big<").unwrap();
    let small = by_size.find("&lt;script").unwrap();
    assert!(big < small, "largest first");
    let listing = client.get("/files/?json").json();
    let names: Vec<&str> = listing["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sub", "<script>alert(1)<script>.txt", "big"]);
    assert_eq!(listing["entries"][2]["size"], 5000);
    assert_eq!(listing["entries"][0]["kind"], "dir");
    // A folder without its slash is sent to it, so relative links work.
    let reply = client.get("/files/sub?json");
    assert_eq!(
        (reply.status, reply.header("location")),
        (303, "/files/sub/?json")
    );
    let crumbs = client.get("/files/sub/").text();
    assert!(
        crumbs.contains("<a href=\"/files/sub/\">sub</a>"),
        "{crumbs}"
    );
}

#[test]
fn a_download_has_its_type_validators_and_ranges() {
    let server = start(&[]);
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
    fs::write(server.root().join("photo.jpg"), &data).unwrap();
    fs::write(server.root().join("page.html"), b"<script>x</script>").unwrap();
    let client = authorized(&server);
    let whole = client.get("/files/photo.jpg");
    assert_eq!(whole.status, 200);
    assert_eq!(whole.body, data);
    assert_eq!(whole.header("content-type"), "image/jpeg");
    assert_eq!(whole.header("accept-ranges"), "bytes");
    assert_eq!(whole.header("content-length"), "100000");
    assert!(whole
        .header("content-disposition")
        .contains("filename=\"photo.jpg\""));
    let etag = whole.header("etag").to_string();
    assert!(etag.starts_with('"'), "{etag}");
    // A page from the share is saved, never run with the share's origin.
    let html = client.get("/files/page.html");
    assert!(html.header("content-disposition").starts_with("attachment"));
    assert_eq!(html.header("content-security-policy"), "sandbox");
    // Resume: one range.
    let part = client.send(
        "GET",
        "/files/photo.jpg",
        &[("range", "bytes=1000-1999")],
        vec![],
    );
    assert_eq!(part.status, 206);
    assert_eq!(part.header("content-range"), "bytes 1000-1999/100000");
    assert_eq!(part.body, &data[1000..2000]);
    let tail = client.send("GET", "/files/photo.jpg", &[("range", "bytes=-10")], vec![]);
    assert_eq!(tail.body, &data[99_990..]);
    let past = client.send(
        "GET",
        "/files/photo.jpg",
        &[("range", "bytes=100000-")],
        vec![],
    );
    assert_eq!(past.status, 416);
    assert_eq!(past.header("content-range"), "bytes */100000");
    // Validators: the same file is 304; a changed one loses its range.
    let again = client.send(
        "GET",
        "/files/photo.jpg",
        &[("if-none-match", &etag)],
        vec![],
    );
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    let kept = client.send(
        "GET",
        "/files/photo.jpg",
        &[("range", "bytes=0-9"), ("if-range", &etag)],
        vec![],
    );
    assert_eq!(kept.status, 206);
    let stale = client.send(
        "GET",
        "/files/photo.jpg",
        &[("range", "bytes=0-9"), ("if-range", "\"old\"")],
        vec![],
    );
    assert_eq!((stale.status, stale.body.len()), (200, 100_000));
    let head = client.send("HEAD", "/files/photo.jpg", &[], vec![]);
    assert_eq!((head.status, head.body.len()), (200, 0));
}

#[test]
fn a_folder_downloads_as_a_tar_that_tar_reads() {
    let server = start(&[]);
    let root = server.root();
    fs::create_dir_all(root.join("album/deep")).unwrap();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    fs::write(root.join("album/big.bin"), &big).unwrap();
    fs::write(root.join("album/deep/note.txt"), b"note").unwrap();
    let long = "n".repeat(120);
    fs::write(root.join("album/deep").join(&long), b"long name").unwrap();
    fs::write(root.join("album/.ferry-partial-abc"), b"half").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", root.join("album/link")).unwrap();
    let reply = authorized(&server).get("/files/album/?tar");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), "application/x-tar");
    assert!(reply.header("content-disposition").contains("album.tar"));
    let out = server.sandbox.path().join("unpacked");
    fs::create_dir(&out).unwrap();
    let mut tar = std::process::Command::new("tar")
        .args(["-xf", "-", "-C"])
        .arg(&out)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("tar");
    tar.stdin.take().unwrap().write_all(&reply.body).unwrap();
    assert!(tar.wait().unwrap().success());
    assert_eq!(fs::read(out.join("album/big.bin")).unwrap(), big);
    assert_eq!(fs::read(out.join("album/deep/note.txt")).unwrap(), b"note");
    assert_eq!(
        fs::read(out.join("album/deep").join(&long)).unwrap(),
        b"long name"
    );
    assert!(!out.join("album/.ferry-partial-abc").exists());
    assert!(!out.join("album/link").exists(), "links are left out");
}

/// Sends `raw` as one request over TCP and returns the status line.
fn raw_status(addr: &str, target: &str, token: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(crate::util::DEADLINE))
        .unwrap();
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.lines().next().unwrap_or_default().to_string()
}

#[test]
fn hostile_paths_never_leave_the_share() {
    let server = start(&[]);
    let root = server.root();
    // The victim lives beside the root, in the test's own sandbox.
    let victim = server.sandbox.path().join("victim.txt");
    fs::write(&victim, b"victim").unwrap();
    std::os::unix::fs::symlink(&victim, root.join("planted")).unwrap();
    std::os::unix::fs::symlink(server.sandbox.path(), root.join("planted_dir")).unwrap();
    fs::write(root.join("ok.txt"), b"ok").unwrap();
    let token = server.token();
    let addr = super::Client::of(&server).addr().to_string();
    for target in [
        "/files/../victim.txt",
        "/files/%2e%2e/victim.txt",
        "/files/%2E%2E%2Fvictim.txt",
        "/files/sub/..%2f..%2fvictim.txt",
        "/files//etc/passwd",
        "/files/%2Fetc%2Fpasswd",
        "/files/ok.txt%00",
        "/files/%zz",
    ] {
        let status = raw_status(&addr, target, &token);
        assert!(status.starts_with("HTTP/1.1 400"), "{target}: {status}");
    }
    for target in [
        "/files/planted",
        "/files/planted_dir/victim.txt",
        "/files/planted_dir/?json",
        "/files/planted_dir/?tar",
        "/files/.ferry-partial-x",
    ] {
        let status = raw_status(&addr, target, &token);
        assert!(status.starts_with("HTTP/1.1 404"), "{target}: {status}");
    }
    assert!(raw_status(&addr, "/files/ok.txt", &token).starts_with("HTTP/1.1 200"));
    assert_eq!(fs::read(&victim).unwrap(), b"victim");
}
