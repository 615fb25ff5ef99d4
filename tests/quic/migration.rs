//! A QUIC connection survives the client's address changing: the library
//! client moves its UDP socket to a new port in the middle of a `get`, an
//! `exec` and a `shell`, and each finishes complete and exact.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ferry::client::files::TransferOptions;
use ferry::client::{ExecRequest, Progress};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

use super::{library_client, quic_server};

/// A long enough transfer that the move happens well inside it.
const BIG: usize = 48 * 1024 * 1024;

/// Counts the bytes received and wakes the test once `after` have come.
struct Watch {
    after: u64,
    received: AtomicU64,
    passed: Notify,
}

impl Progress for Watch {
    fn advanced(&self, bytes: u64) {
        let before = self.received.fetch_add(bytes, Ordering::SeqCst);
        if before < self.after && before + bytes >= self.after {
            self.passed.notify_one();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_goes_on_when_the_client_moves_to_a_new_port() {
    let server = quic_server(&[]);
    let data: Vec<u8> = (0..BIG as u64)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(server.root().join("big.bin"), &data).unwrap();
    let dl = server.sandbox.path().join("dl");
    std::fs::create_dir(&dl).unwrap();

    let mut client = library_client(&server).await;
    let path = client.quic_path().expect("a QUIC client");
    let before = path.local_addr().unwrap();
    let watch = Arc::new(Watch {
        after: 4 * 1024 * 1024,
        received: AtomicU64::new(0),
        passed: Notify::new(),
    });
    let options = TransferOptions {
        recursive: false,
        force: false,
        resume: false,
        preserve: false,
        md5: false,
        list_files: false,
        // One connection: the test moves its path.
        streams: Some(1),
        // The test moves the path; a reconnect would hide a lost one.
        retry: ferry::client::retry::Retry::never(),
    };
    let get = client.get(b"big.bin", &dl, options, watch.clone());
    let mover = async {
        watch.passed.notified().await;
        let moved = path.move_to_new_port().expect("rebind");
        (moved, watch.received.load(Ordering::SeqCst))
    };
    let (report, (moved, at)) = tokio::join!(get, mover);
    report.expect("the get finished");
    client.close().await;
    assert_ne!(moved.port(), before.port());
    assert_eq!(path.local_addr().unwrap(), moved);
    assert!(
        at < BIG as u64,
        "moved only after the transfer ({at} bytes)"
    );
    let got = std::fs::read(dl.join("big.bin")).unwrap();
    assert!(
        got == data,
        "the file differs ({} of {BIG} bytes)",
        got.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_goes_on_when_the_client_moves_to_a_new_port() {
    let server = quic_server(&[]);
    let mut client = library_client(&server).await;
    let path = client.quic_path().expect("a QUIC client");
    let before = path.local_addr().unwrap();
    // Prints a line, waits for one on stdin, echoes it, then prints 4 MiB.
    let request = ExecRequest {
        shell: Some(
            "echo ready; read line; echo \"got $line\"; head -c 4194304 /dev/zero | tr '\\0' x"
                .into(),
        ),
        ..ExecRequest::default()
    };
    let (stdin, mut to_stdin) = tokio::io::duplex(1024);
    let (mut stdout, mut from_stdout) = tokio::io::duplex(64 * 1024);
    let mut stderr = Vec::new();
    let exec = async {
        let end = client
            .exec(&request, Some(stdin), &mut stdout, &mut stderr)
            .await;
        drop(stdout);
        end
    };
    let driver = async {
        let mut seen = Vec::new();
        let mut buf = [0u8; 64 * 1024];
        while !seen.ends_with(b"ready\n") {
            let n = from_stdout.read(&mut buf).await.unwrap();
            assert!(n > 0, "stdout ended before `ready`: {seen:?}");
            seen.extend_from_slice(&buf[..n]);
        }
        let moved = path.move_to_new_port().expect("rebind");
        to_stdin.write_all(b"after the move\n").await.unwrap();
        drop(to_stdin);
        from_stdout.read_to_end(&mut seen).await.unwrap();
        (moved, seen)
    };
    let (end, (moved, seen)) = tokio::join!(exec, driver);
    let end = end.expect("the exec finished");
    client.close().await;
    assert_eq!(end.exit_code, Some(0), "{end:?}");
    assert_ne!(moved.port(), before.port());
    let mut expected = b"ready\ngot after the move\n".to_vec();
    expected.extend(std::iter::repeat_n(b'x', 4 * 1024 * 1024));
    assert!(seen == expected, "stdout differs: {} bytes", seen.len());
    assert!(stderr.is_empty(), "{}", String::from_utf8_lossy(&stderr));
}

/// Reads `from` into `seen` until it holds `needle`.
async fn read_until(from: &mut tokio::io::DuplexStream, seen: &mut Vec<u8>, needle: &[u8]) {
    let mut buf = [0u8; 4096];
    while !seen.windows(needle.len()).any(|w| w == needle) {
        let n = tokio::time::timeout(crate::util::DEADLINE, from.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} in {:?}", String::from_utf8_lossy(seen)))
            .unwrap();
        assert!(n > 0, "the shell ended before {needle:?}");
        seen.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shell_goes_on_when_the_client_moves_to_a_new_port() {
    let server = quic_server(&[]);
    let mut client = library_client(&server).await;
    let path = client.quic_path().expect("a QUIC client");
    let before = path.local_addr().unwrap();
    let request = ferry::client::ShellRequest {
        term: None,
        rows: 24,
        cols: 80,
        ..Default::default()
    };
    let (keys, mut typing) = tokio::io::duplex(1024);
    let (mut screen, mut shown) = tokio::io::duplex(64 * 1024);
    let (_resize, resizes) = tokio::sync::mpsc::channel(1);
    let shell = async {
        let end = client.shell(&request, keys, &mut screen, resizes).await;
        drop(screen);
        end
    };
    let person = async {
        let mut seen = Vec::new();
        // The shell computes what it prints, so its echo of the typed line
        // cannot pass for the answer.
        typing.write_all(b"echo before-$((6*7))\n").await.unwrap();
        read_until(&mut shown, &mut seen, b"before-42").await;
        let moved = path.move_to_new_port().expect("rebind");
        typing
            .write_all(b"echo after-$((6*7+1)); exit 5\n")
            .await
            .unwrap();
        read_until(&mut shown, &mut seen, b"after-43").await;
        shown.read_to_end(&mut seen).await.unwrap();
        moved
    };
    let (end, moved) = tokio::join!(shell, person);
    let end = end.expect("the shell ended properly");
    client.close().await;
    assert_eq!(end.exit_code, Some(5), "{end:?}");
    assert_ne!(moved.port(), before.port());
}
