//! The share in a real browser: headless Chromium driven over WebDriver
//! (chromedriver, Debian's `chromium` and `chromium-driver`), through a
//! TCP proxy the test can cut. It logs in with the form, browses, clicks a
//! download, uploads a 200 MiB file with the page's own script (which
//! hashes it with its own BLAKE3 first), loses the
//! connection mid-upload, reloads and picks the file again, and checks
//! that the upload resumed (far less than the whole file crossed again)
//! and that the BLAKE3 on disk is the source's. Screenshots of the listing
//! and of the upload go to `target/http-browser/`.
//!
//! Without chromium or chromedriver the test says SKIPPED (and fails under
//! `FERRY_REQUIRE_ALL_TESTS=1`, as `.ci/run` sets).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use super::client::Client;
use super::start;
use crate::util::{outside_tool, poll_until, Process, DEADLINE};

/// How long the 200 MiB upload may take, both halves, on a loaded debug
/// build.
const UPLOAD_DEADLINE: Duration = Duration::from_secs(240);
const UPLOAD_BYTES: usize = 200 << 20;

/// A TCP proxy whose connections the test can cut at once, counting the
/// bytes that go from the browser to the server.
struct Proxy {
    addr: String,
    open: Arc<Mutex<Vec<TcpStream>>>,
    upstream_bytes: Arc<AtomicU64>,
}

impl Proxy {
    fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let upstream_bytes = Arc::new(AtomicU64::new(0));
        let (list, counter) = (open.clone(), upstream_bytes.clone());
        std::thread::spawn(move || {
            for browser in listener.incoming() {
                let Ok(browser) = browser else { return };
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                {
                    let mut list = list.lock().unwrap();
                    list.push(browser.try_clone().unwrap());
                    list.push(server.try_clone().unwrap());
                }
                let (b2, s2) = (browser.try_clone().unwrap(), server.try_clone().unwrap());
                let counter = counter.clone();
                std::thread::spawn(move || pipe(browser, server, Some(counter)));
                std::thread::spawn(move || pipe(s2, b2, None));
            }
        });
        Proxy {
            addr,
            open,
            upstream_bytes,
        }
    }

    /// Cuts every connection open now, as a network drop would.
    fn cut(&self) {
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream, counter: Option<Arc<AtomicU64>>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(counter) = &counter {
            counter.fetch_add(n as u64, Ordering::Relaxed);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// The TCP port a process listens on, from /proc: chromedriver picks one
/// for `--port=0` and does not say which.
fn listening_port(pid: u32) -> Option<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let text = target.to_string_lossy().into_owned();
            Some(
                text.strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_string(),
            )
        })
        .collect();
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let listening = fields.get(3) == Some(&"0A");
        let ours = fields
            .get(9)
            .is_some_and(|inode| inodes.iter().any(|i| i == inode));
        if !(listening && ours) {
            return None;
        }
        let port = fields[1].split(':').nth(1)?;
        u16::from_str_radix(port, 16).ok()
    })
}

/// A WebDriver session, deleted (and its browser closed) when dropped.
struct Browser {
    driver: Client,
    session: String,
    _chromedriver: Process,
}

impl Browser {
    fn start(chromedriver: &Path, chromium: &Path, profile: &Path, downloads: &Path) -> Browser {
        let mut cmd = std::process::Command::new(chromedriver);
        cmd.arg("--port=0")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let process = Process::spawn(&mut cmd);
        let pid = process.pid();
        let port = poll_until("chromedriver to listen", DEADLINE, || listening_port(pid));
        let driver = Client::at(&format!("127.0.0.1:{port}"));
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--disable-gpu", "--window-size=1200,900",
                         format!("--user-data-dir={}", profile.display())],
                "prefs": {
                    "download.default_directory": downloads,
                    "download.prompt_for_download": false,
                },
            },
        }}});
        let reply = call(&driver, "POST", "/session", Some(capabilities));
        let session = reply["sessionId"].as_str().expect("a session").to_string();
        Browser {
            driver,
            session,
            _chromedriver: process,
        }
    }

    fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        call(&self.driver, method, &path, body)
    }

    fn go(&self, url: &str) {
        self.command("POST", "/url", Some(json!({ "url": url })));
    }

    fn find(&self, css: &str) -> String {
        let body = json!({"using": "css selector", "value": css});
        let found = self.command("POST", "/element", Some(body));
        found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_string()
    }

    fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css);
        let path = format!("/element/{element}/value");
        self.command("POST", &path, Some(json!({ "text": text })));
    }

    fn click(&self, css: &str) {
        let element = self.find(css);
        self.command(
            "POST",
            &format!("/element/{element}/click"),
            Some(json!({})),
        );
    }

    fn script(&self, script: &str) -> Value {
        let body = json!({"script": script, "args": []});
        self.command("POST", "/execute/sync", Some(body))
    }

    fn screenshot(&self, to: &Path) {
        let png = self.command("GET", "/screenshot", None);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        std::fs::write(to, bytes).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let path = format!("/session/{}", self.session);
        let _ = self.driver.try_send("DELETE", &path, &[], Vec::new());
    }
}

/// One WebDriver command; its `value`, or a panic with the driver's error.
fn call(driver: &Client, method: &str, path: &str, body: Option<Value>) -> Value {
    let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let headers = [("content-type", "application/json")];
    let reply = driver.send_within(method, path, &headers, body, Duration::from_secs(60));
    let value = reply.json();
    assert_eq!(reply.status, 200, "{method} {path}: {value}");
    value["value"].clone()
}

/// A partial file's length under `dir`, if one is there.
fn partial_len(dir: &Path) -> Option<u64> {
    std::fs::read_dir(dir).ok()?.flatten().find_map(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        name.starts_with(".ferry-partial-")
            .then(|| e.metadata().ok().map(|m| m.len()))?
    })
}

fn screenshots_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/http-browser");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_browser_logs_in_browses_downloads_and_resumes_a_200_mib_upload() {
    let install = "apt install chromium chromium-driver";
    let Some(chromium) = outside_tool::program("chromium", install) else {
        return;
    };
    let Some(chromedriver) = outside_tool::program("chromedriver", install) else {
        return;
    };
    let server = start(&["--http-upload"]);
    std::fs::write(server.root().join("hello.bin"), b"hello from the share\n").unwrap();
    std::fs::create_dir(server.root().join("photos")).unwrap();
    let sandbox = server.sandbox.path().to_path_buf();
    let source = sandbox.join("big.bin");
    let mut data = vec![0u8; UPLOAD_BYTES];
    blake3::Hasher::new()
        .update(b"ferry browser test")
        .finalize_xof()
        .fill(&mut data);
    std::fs::write(&source, &data).unwrap();
    let expected = blake3::hash(&data);
    drop(data);
    let downloads = sandbox.join("downloads");
    std::fs::create_dir(&downloads).unwrap();
    let proxy = Proxy::start(Client::of(&server).addr().to_string());
    let base = format!("http://{}", proxy.addr);
    let browser = Browser::start(
        &chromedriver,
        &chromium,
        &sandbox.join("profile"),
        &downloads,
    );
    let shots = screenshots_dir();

    // Log in through the form.
    browser.go(&format!("{base}/files/"));
    browser.type_into("input[name=token]", &server.token());
    browser.click("form button");
    // The click returns once the form is sent; the listing it leads to
    // loads after.
    poll_until("the listing after logging in", DEADLINE, || {
        let title = browser.script("return document.title;");
        title
            .as_str()
            .is_some_and(|t| t.starts_with("share"))
            .then_some(())
    });
    browser.screenshot(&shots.join("listing.png"));

    // Browse into a folder and back, then download a file by its link.
    browser.click("a[href=\"photos/\"]");
    let here = browser.script("return location.pathname;");
    assert_eq!(here, "/files/photos/");
    browser.go(&format!("{base}/files/"));
    browser.click("a[href=\"hello.bin\"]");
    // Chrome holds the name with an empty file while the bytes go to a
    // .crdownload beside it, and renames that over it when done.
    let downloaded = poll_until("the download to land", DEADLINE, || {
        std::fs::read(downloads.join("hello.bin"))
            .ok()
            .filter(|bytes| !bytes.is_empty())
    });
    assert_eq!(downloaded, b"hello from the share\n");

    // Upload 200 MiB; cut the connection once a few chunks are in.
    browser.type_into("#files", source.to_str().unwrap());
    poll_until("part of the upload to arrive", UPLOAD_DEADLINE, || {
        partial_len(server.root()).filter(|len| *len >= 40 << 20)
    });
    browser.screenshot(&shots.join("upload.png"));
    proxy.cut();
    let before = proxy.upstream_bytes.load(Ordering::Relaxed);
    // The page hashed the file with its own BLAKE3 and said so at creation:
    // the server will hold the upload to it.
    let records = server.state_dir().join("http-uploads");
    let record = std::fs::read_dir(&records)
        .unwrap()
        .flatten()
        .next()
        .unwrap();
    let record: Value = serde_json::from_slice(&std::fs::read(record.path()).unwrap()).unwrap();
    assert_eq!(record["blake3"], expected.to_hex().as_str(), "{record}");
    // Reload, and pick the same file again: the page resumes it.
    browser.go(&format!("{base}/files/"));
    browser.type_into("#files", source.to_str().unwrap());
    let target = server.root().join("big.bin");
    poll_until("the upload to complete", UPLOAD_DEADLINE, || {
        std::fs::metadata(&target)
            .ok()
            .filter(|m| m.len() == UPLOAD_BYTES as u64)
    });
    let after = proxy.upstream_bytes.load(Ordering::Relaxed) - before;
    assert!(
        after < (UPLOAD_BYTES as u64) * 9 / 10,
        "the upload started over: {after} bytes after the cut"
    );
    let on_disk = blake3::hash(&std::fs::read(&target).unwrap());
    assert_eq!(on_disk, expected, "the BLAKE3 on disk is the source's");
    assert_eq!(partial_len(server.root()), None, "no partial left");
}
