//! A real HTTP client for the HTTP door's tests: hyper's HTTP/1.1 client
//! over plain TCP or over TLS (the server's own certificate, checked
//! against the fingerprint it printed), one connection per request, every
//! request under [`DEADLINE`].

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::util::{Server, DEADLINE};

/// One answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    /// A header's value as text ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {}", self.text()))
    }
}

/// Where requests go.
#[derive(Clone)]
pub struct Client {
    addr: String,
    /// The fingerprint to pin, for HTTPS.
    tls: Option<String>,
    /// Headers every request carries.
    headers: Vec<(String, String)>,
}

impl Client {
    /// A client of `server`'s HTTP door, plain or TLS as its line says.
    pub fn of(server: &Server) -> Client {
        let line = server
            .listening()
            .iter()
            .find(|l| l.mode == "HTTP" || l.mode == "HTTPS")
            .expect("an HTTP listener");
        let tls = (line.mode == "HTTPS").then(|| server.fingerprint().to_string());
        Client {
            addr: line.addr.clone(),
            tls,
            headers: Vec::new(),
        }
    }

    /// A plain HTTP client of `addr` (host:port).
    pub fn at(addr: &str) -> Client {
        Client {
            addr: addr.to_string(),
            tls: None,
            headers: Vec::new(),
        }
    }

    /// This client with a header on every request.
    pub fn with(mut self, name: &str, value: &str) -> Client {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// This client with the bearer token `token`.
    pub fn bearer(self, token: &str) -> Client {
        self.with("authorization", &format!("Bearer {token}"))
    }

    /// The host:port requests go to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// GET `path`.
    pub fn get(&self, path: &str) -> Reply {
        self.send("GET", path, &[], Vec::new())
    }

    /// `method` `path` with extra `headers` and `body`.
    pub fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Reply {
        self.send_within(method, path, headers, body, DEADLINE)
    }

    /// [`Client::send`] with a deadline of its own.
    pub fn send_within(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
        within: Duration,
    ) -> Reply {
        self.try_send_within(method, path, headers, body, within)
            .unwrap_or_else(|| panic!("{method} {path}: no answer within {within:?}"))
    }

    /// [`Client::send`] that gives up quietly: for a cleanup.
    pub fn try_send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Option<Reply> {
        self.try_send_within(method, path, headers, body, DEADLINE)
    }

    fn try_send_within(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
        within: Duration,
    ) -> Option<Reply> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let future = self.exchange(method, path, headers, body);
        runtime
            .block_on(async { tokio::time::timeout(within, future).await })
            .ok()
    }

    async fn exchange(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Reply {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.addr);
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(Bytes::from(body))).unwrap();
        let tcp = TcpStream::connect(&self.addr).await.expect("connect");
        match &self.tls {
            None => exchange_on(tcp, request).await,
            Some(pin) => {
                let mut config = (*ferry::transport::tls::client_config()).clone();
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
                let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
                let name = ferry::transport::tls::server_name("localhost");
                let stream = connector.connect(name, tcp).await.expect("TLS");
                let der = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
                let seen = ferry::transport::Fingerprint::of_certificate(&der).to_string();
                assert_eq!(&seen, pin, "the HTTPS certificate is the server's own");
                exchange_on(stream, request).await
            }
        }
    }
}

async fn exchange_on<S>(stream: S, request: Request<Full<Bytes>>) -> Reply
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP handshake");
    tokio::spawn(connection);
    let response = sender.send_request(request).await.expect("a response");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    Reply {
        status,
        headers,
        body,
    }
}
