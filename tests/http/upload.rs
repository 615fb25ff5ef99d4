//! Resumable uploads (tus 1.0): creation, chunks with and without
//! checksums, wrong offsets, termination, a whole-file BLAKE3, a restart of
//! the server in the middle, and names that try to leave the folder.

use std::fs;

use base64::Engine;

use super::client::{Client, Reply};
use super::{authorized, start};
use crate::util::Server;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// POST on `folder` for `length` bytes named `name`, with `extra`
/// metadata; returns the reply.
fn create(client: &Client, folder: &str, name: &str, length: u64, extra: &str) -> Reply {
    let length = length.to_string();
    let metadata = format!("filename {}{extra}", b64(name.as_bytes()));
    client.send(
        "POST",
        folder,
        &[
            ("tus-resumable", "1.0.0"),
            ("upload-length", &length),
            ("upload-metadata", &metadata),
        ],
        Vec::new(),
    )
}

/// The upload URL of a creation that must succeed.
fn created(client: &Client, folder: &str, name: &str, length: u64, extra: &str) -> String {
    let reply = create(client, folder, name, length, extra);
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert_eq!(reply.header("tus-resumable"), "1.0.0");
    let location = reply.header("location").to_string();
    assert!(location.starts_with("/uploads/"), "{location}");
    location
}

/// PATCH `bytes` at `offset`, with `extra` headers.
fn patch(client: &Client, url: &str, offset: u64, bytes: &[u8], extra: &[(&str, &str)]) -> Reply {
    let offset = offset.to_string();
    let mut headers = vec![
        ("tus-resumable", "1.0.0"),
        ("content-type", "application/offset+octet-stream"),
        ("upload-offset", offset.as_str()),
    ];
    headers.extend_from_slice(extra);
    client.send("PATCH", url, &headers, bytes.to_vec())
}

fn offset_of(client: &Client, url: &str) -> Reply {
    client.send("HEAD", url, &[("tus-resumable", "1.0.0")], Vec::new())
}

#[test]
fn the_server_speaks_tus_and_uploads_are_off_unless_asked() {
    let off = start(&[]);
    let reply = create(&authorized(&off), "/files/", "a", 1, "");
    assert_eq!(reply.status, 403);
    assert!(reply.text().contains("--http-upload"), "{}", reply.text());
    let server = start(&["--http-upload"]);
    let client = authorized(&server);
    let options = client.send("OPTIONS", "/files/", &[], Vec::new());
    assert_eq!(options.status, 204);
    assert_eq!(options.header("tus-version"), "1.0.0");
    assert_eq!(
        options.header("tus-extension"),
        "creation,termination,checksum"
    );
    assert_eq!(options.header("tus-checksum-algorithm"), "blake3,sha1");
    assert_eq!(options.header("tus-max-size"), (1u64 << 40).to_string());
    let no_version = client.send("POST", "/files/", &[("upload-length", "1")], Vec::new());
    assert_eq!(no_version.status, 412);
}

#[test]
fn chunks_are_checked_and_the_file_appears_only_when_complete() {
    let server = start(&["--http-upload"]);
    fs::create_dir(server.root().join("in")).unwrap();
    fs::write(server.root().join("in/report.pdf"), b"old").unwrap();
    let client = authorized(&server);
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let hash = blake3::hash(&data).to_hex().to_string();
    let meta = format!(",blake3 {}", b64(hash.as_bytes()));
    let url = created(
        &client,
        "/files/in/",
        "report.pdf",
        data.len() as u64,
        &meta,
    );
    let first = &data[..100_000];
    let sum = format!("blake3 {}", b64(blake3::hash(first).as_bytes()));
    let reply = patch(&client, &url, 0, first, &[("upload-checksum", &sum)]);
    assert_eq!(
        (reply.status, reply.header("upload-offset")),
        (204, "100000")
    );
    // While it is incomplete the old file stays, and no partial is listed.
    assert_eq!(
        fs::read(server.root().join("in/report.pdf")).unwrap(),
        b"old"
    );
    let listing = client.get("/files/in/?json").json();
    assert_eq!(listing["entries"].as_array().unwrap().len(), 1, "{listing}");
    // A wrong offset is refused with the right one.
    let reply = patch(&client, &url, 5, &data[5..10], &[]);
    assert_eq!(
        (reply.status, reply.header("upload-offset")),
        (409, "100000")
    );
    // A chunk that does not match its checksum is rolled back.
    let bad = format!("sha1 {}", b64(&[0u8; 20]));
    let reply = patch(
        &client,
        &url,
        100_000,
        &data[100_000..200_000],
        &[("upload-checksum", &bad)],
    );
    assert_eq!(reply.status, 460, "{}", reply.text());
    assert_eq!(offset_of(&client, &url).header("upload-offset"), "100000");
    let unknown = patch(
        &client,
        &url,
        100_000,
        &data[100_000..200_000],
        &[("upload-checksum", "md5 AAAA")],
    );
    assert_eq!(unknown.status, 400);
    let wrong_type = client.send(
        "PATCH",
        &url,
        &[("tus-resumable", "1.0.0"), ("upload-offset", "100000")],
        data[100_000..].to_vec(),
    );
    assert_eq!(wrong_type.status, 415);
    // Past the length is refused before a byte is written.
    let mut too_long = data[100_000..].to_vec();
    too_long.push(0);
    assert_eq!(patch(&client, &url, 100_000, &too_long, &[]).status, 413);
    let sha1 = aws_lc_rs_sha1(&data[100_000..]);
    let good = format!("sha1 {}", b64(&sha1));
    let reply = patch(
        &client,
        &url,
        100_000,
        &data[100_000..],
        &[("upload-checksum", &good)],
    );
    assert_eq!(
        (reply.status, reply.header("upload-offset")),
        (204, "300000")
    );
    assert_eq!(fs::read(server.root().join("in/report.pdf")).unwrap(), data);
    assert_eq!(
        offset_of(&client, &url).status,
        404,
        "a finished upload is gone"
    );
    assert_eq!(partials(&server), 0);
}

fn aws_lc_rs_sha1(bytes: &[u8]) -> Vec<u8> {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, bytes);
    digest.as_ref().to_vec()
}

/// Partial files left anywhere under the root.
fn partials(server: &Server) -> usize {
    fn walk(dir: &std::path::Path) -> usize {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let here = usize::from(name.starts_with(".ferry-partial-"));
                here + if e.file_type().unwrap().is_dir() {
                    walk(&e.path())
                } else {
                    0
                }
            })
            .sum()
    }
    walk(server.root())
}

#[test]
fn a_file_that_misses_its_blake3_is_not_kept() {
    let server = start(&["--http-upload"]);
    let client = authorized(&server);
    let wrong = blake3::hash(b"something else").to_hex().to_string();
    let meta = format!(",blake3 {}", b64(wrong.as_bytes()));
    let url = created(&client, "/files/", "f.bin", 4, &meta);
    let reply = patch(&client, &url, 0, b"data", &[]);
    assert_eq!(reply.status, 460, "{}", reply.text());
    assert!(!server.root().join("f.bin").exists());
    assert_eq!(partials(&server), 0);
}

#[test]
fn termination_removes_the_partial() {
    let server = start(&["--http-upload"]);
    let client = authorized(&server);
    let url = created(&client, "/files/", "gone.bin", 10, "");
    assert_eq!(patch(&client, &url, 0, b"12345", &[]).status, 204);
    assert_eq!(partials(&server), 1);
    let reply = client.send("DELETE", &url, &[("tus-resumable", "1.0.0")], Vec::new());
    assert_eq!(reply.status, 204);
    assert_eq!(partials(&server), 0);
    assert_eq!(offset_of(&client, &url).status, 404);
    assert!(!server.root().join("gone.bin").exists());
}

#[test]
fn folders_of_files_and_empty_files_upload_and_names_stay_inside() {
    let server = start(&["--http-upload"]);
    let client = authorized(&server);
    let url = created(&client, "/files/", "album/2024/a.txt", 2, "");
    assert_eq!(patch(&client, &url, 0, b"hi", &[]).status, 204);
    assert_eq!(
        fs::read(server.root().join("album/2024/a.txt")).unwrap(),
        b"hi"
    );
    created(&client, "/files/album/", "empty", 0, "");
    assert_eq!(fs::read(server.root().join("album/empty")).unwrap(), b"");
    for hostile in ["../escape", "/etc/x", "a/../../b", ".ferry-partial-x"] {
        let reply = create(&client, "/files/", hostile, 1, "");
        assert_eq!(reply.status, 400, "{hostile}: {}", reply.text());
    }
    assert!(!server.sandbox.path().join("escape").exists());
}

#[test]
fn an_upload_resumes_after_the_server_restarts() {
    let sandbox = crate::util::Sandbox::new();
    let args = ["--plaintext", "--http", "127.0.0.1:0", "--http-upload"];
    let mut server = Server::start_in(&sandbox, &args);
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 256) as u8).collect();
    let hash = blake3::hash(&data).to_hex().to_string();
    let meta = format!(",blake3 {}", b64(hash.as_bytes()));
    let url = created(&authorized(&server), "/files/", "big.bin", 200_000, &meta);
    let reply = patch(&authorized(&server), &url, 0, &data[..123_456], &[]);
    assert_eq!(reply.status, 204);
    server.stop();
    let server = Server::start_in(&sandbox, &args);
    let client = authorized(&server);
    let head = offset_of(&client, &url);
    assert_eq!((head.status, head.header("upload-offset")), (200, "123456"));
    assert_eq!(head.header("upload-length"), "200000");
    let reply = patch(&client, &url, 123_456, &data[123_456..], &[]);
    assert_eq!(reply.status, 204, "{}", reply.text());
    assert_eq!(fs::read(server.root().join("big.bin")).unwrap(), data);
}

#[test]
fn a_chunk_over_the_limit_is_refused_by_its_length() {
    use std::io::{Read, Write};
    let server = start(&["--http-upload"]);
    let client = authorized(&server);
    let url = created(&client, "/files/", "huge", 1 << 30, "");
    // The header alone is refused: none of the 60 MiB has to be sent.
    let mut stream = std::net::TcpStream::connect(client.addr()).unwrap();
    stream
        .set_read_timeout(Some(crate::util::DEADLINE))
        .unwrap();
    let request = format!(
        "PATCH {url} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n\
         Upload-Offset: 0\r\nContent-Length: {}\r\n\r\n",
        server.token(),
        60u64 << 20
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = [0u8; 64];
    let n = stream.read(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    drop(stream);
    assert_eq!(offset_of(&client, &url).header("upload-offset"), "0");
}

#[test]
fn a_dropped_connection_resumes_from_what_reached_the_disk() {
    use std::io::Write;
    let server = start(&["--http-upload"]);
    let client = authorized(&server);
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 241) as u8).collect();
    let url = created(&client, "/files/", "cut.bin", 200_000, "");
    let mut stream = std::net::TcpStream::connect(client.addr()).unwrap();
    let request = format!(
        "PATCH {url} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n\
         Upload-Offset: 0\r\nContent-Length: 200000\r\n\r\n",
        server.token()
    );
    stream.write_all(request.as_bytes()).unwrap();
    stream.write_all(&data[..70_000]).unwrap();
    // The network drops mid-chunk.
    stream.shutdown(std::net::Shutdown::Both).unwrap();
    drop(stream);
    crate::util::poll_until(
        "the cut chunk to be committed",
        crate::util::DEADLINE,
        || {
            let head = offset_of(&client, &url);
            (head.status == 200 && head.header("upload-offset") == "70000").then_some(())
        },
    );
    let reply = patch(&client, &url, 70_000, &data[70_000..], &[]);
    assert_eq!(reply.status, 204, "{}", reply.text());
    assert_eq!(fs::read(server.root().join("cut.bin")).unwrap(), data);
}

#[test]
fn uploads_in_progress_are_bounded() {
    let server = start(&["--http-upload"]);
    let client = authorized(&server);
    let max = 256; // limits::HTTP.max_uploads
    for i in 0..max {
        created(&client, "/files/", &format!("f{i}"), 10, "");
    }
    let reply = create(&client, "/files/", "one-more", 10, "");
    assert_eq!(reply.status, 503, "{}", reply.text());
    // Giving one up makes room.
    let url = created_after_room(&client, &server);
    assert!(url.starts_with("/uploads/"));
}

/// Gives up one upload in progress (found by its record in the state
/// directory) and creates another in its place.
fn created_after_room(client: &Client, server: &Server) -> String {
    let records = server.state_dir().join("http-uploads");
    let id = fs::read_dir(&records)
        .unwrap()
        .flatten()
        .find_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".json").map(str::to_string)
        })
        .expect("an upload record");
    let reply = client.send(
        "DELETE",
        &format!("/uploads/{id}"),
        &[("tus-resumable", "1.0.0")],
        Vec::new(),
    );
    assert_eq!(reply.status, 204);
    created(client, "/files/", "one-more", 10, "")
}
