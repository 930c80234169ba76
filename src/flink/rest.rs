//! A small HTTP/1.1 client for Flink's REST API (the JobManager's `rest.port`): GET and POST of
//! JSON, and the multipart upload of a jar (`/jars/upload`). Flink's REST server (Netty,
//! `RestServerEndpoint`) answers each request with one full response carrying `Content-Length`;
//! chunked responses are read too. One connection per request (`Connection: close`): the calls
//! are a few a second, and a killed JobManager is seen at once as a refused connection.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use thiserror::Error;

/// How long a connection may take to open (the REST server is local or near).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a response may take (a jar's main() runs inside `/jars/:id/run`: seconds).
const READ_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Error)]
pub enum RestError {
    #[error("`{0}` is not an http://HOST:PORT address")]
    BadUrl(String),
    #[error("cannot reach {url}: {why}")]
    Unreachable { url: String, why: String },
    #[error("{method} {url}: HTTP {status}: {body}")]
    Status { method: &'static str, url: String, status: u16, body: String },
    #[error("{url} did not answer as Flink's REST API does: {why}")]
    NotFlink { url: String, why: String },
}

/// A REST endpoint: `http://host:port` (no TLS, no path prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// `http://HOST:PORT` (a trailing `/` is allowed).
    pub fn parse(url: &str) -> Result<Endpoint, RestError> {
        let bad = || RestError::BadUrl(url.to_string());
        let rest = url.strip_prefix("http://").ok_or_else(bad)?.trim_end_matches('/');
        let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
        if host.is_empty() || host.contains('/') {
            return Err(bad());
        }
        Ok(Endpoint { host: host.to_string(), port: port.parse().map_err(|_| bad())? })
    }

    pub fn url(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }

    /// GET `path` as JSON.
    pub fn get(&self, path: &str) -> Result<serde_json::Value, RestError> {
        self.json("GET", path, "application/json", &[])
    }

    /// POST a JSON body to `path`.
    pub fn post(&self, path: &str, body: &serde_json::Value) -> Result<serde_json::Value, RestError> {
        self.json("POST", path, "application/json", body.to_string().as_bytes())
    }

    /// PATCH `path` (Flink cancels a job with `PATCH /jobs/:id?mode=cancel`).
    pub fn patch(&self, path: &str) -> Result<serde_json::Value, RestError> {
        self.json("PATCH", path, "application/json", &[])
    }

    /// Uploads a jar to `/jars/upload` (Flink's `JarUploadHandler`: multipart, one file part
    /// named `jarfile`); returns the id `/jars/:id/run` takes (the `filename` answered, last
    /// path element).
    pub fn upload_jar(&self, name: &str, jar: &[u8]) -> Result<String, RestError> {
        let boundary = "ckptlab-jar-boundary-7f3a";
        let mut body = Vec::with_capacity(jar.len() + 256);
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"jarfile\"; filename=\"{name}\"\r\nContent-Type: application/x-java-archive\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(jar);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let v = self.json("POST", "/jars/upload", &format!("multipart/form-data; boundary={boundary}"), &body)?;
        let file = v["filename"].as_str().ok_or_else(|| RestError::NotFlink { url: self.url(), why: format!("no filename in {v}") })?;
        Ok(file.rsplit('/').next().unwrap_or(file).to_string())
    }

    fn json(&self, method: &'static str, path: &str, content_type: &str, body: &[u8]) -> Result<serde_json::Value, RestError> {
        let url = format!("{}{path}", self.url());
        let (status, text) = self.request(method, path, content_type, body)?;
        if !(200..300).contains(&status) {
            return Err(RestError::Status { method, url, status, body: text.chars().take(500).collect() });
        }
        if text.trim().is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| RestError::NotFlink { url, why: format!("not JSON ({e}): {}", text.chars().take(200).collect::<String>()) })
    }

    fn request(&self, method: &str, path: &str, content_type: &str, body: &[u8]) -> Result<(u16, String), RestError> {
        let url = format!("{}{path}", self.url());
        let unreachable = |why: String| RestError::Unreachable { url: url.clone(), why };
        let addrs: Vec<SocketAddr> =
            (self.host.as_str(), self.port).to_socket_addrs().map_err(|e| unreachable(format!("cannot resolve {}: {e}", self.host)))?.collect();
        let mut last = String::from("no address");
        let mut stream = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = e.to_string(),
            }
        }
        let mut stream = stream.ok_or_else(|| unreachable(last))?;
        let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
        let _ = stream.set_nodelay(true);
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}:{}\r\nAccept: application/json\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            self.host,
            self.port,
            body.len()
        );
        stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body)).map_err(|e| unreachable(e.to_string()))?;
        let mut r = BufReader::new(stream);
        let mut line = String::new();
        r.read_line(&mut line).map_err(|e| unreachable(e.to_string()))?;
        let not_http = |why: &str| RestError::NotFlink { url: url.clone(), why: why.to_string() };
        let status: u16 = line
            .strip_prefix("HTTP/1.")
            .and_then(|l| l.get(2..5))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| not_http(&format!("not an HTTP response: {:?}", line.trim())))?;
        let (mut length, mut chunked) = (None, false);
        loop {
            line.clear();
            if r.read_line(&mut line).map_err(|e| unreachable(e.to_string()))? == 0 {
                break;
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                match k.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = v.trim().parse::<usize>().ok(),
                    "transfer-encoding" => chunked = v.trim().eq_ignore_ascii_case("chunked"),
                    _ => {}
                }
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                r.read_line(&mut line).map_err(|e| unreachable(e.to_string()))?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16).map_err(|_| not_http("a bad chunk size"))?;
                if size == 0 {
                    break;
                }
                let mut chunk = vec![0; size + 2];
                r.read_exact(&mut chunk).map_err(|e| unreachable(e.to_string()))?;
                body.extend_from_slice(&chunk[..size]);
            }
        } else if let Some(n) = length {
            body.resize(n, 0);
            r.read_exact(&mut body).map_err(|e| unreachable(e.to_string()))?;
        } else {
            r.read_to_end(&mut body).map_err(|e| unreachable(e.to_string()))?;
        }
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_and_bad_ones_say_why() {
        assert_eq!(Endpoint::parse("http://127.0.0.1:8081/").unwrap(), Endpoint { host: "127.0.0.1".into(), port: 8081 });
        for bad in ["127.0.0.1:8081", "https://h:1", "http://h", "http://:80", "http://h:x"] {
            assert!(matches!(Endpoint::parse(bad), Err(RestError::BadUrl(_))), "{bad}");
        }
    }

    /// A one-shot server answering `response` to the first request; returns its endpoint.
    fn serve(response: &'static str) -> Endpoint {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = l.accept() {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let _ = s.write_all(response.as_bytes());
            }
        });
        Endpoint { host: "127.0.0.1".into(), port }
    }

    #[test]
    fn json_comes_back_by_length_and_by_chunks() {
        let e = serve("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"jobs\":[1] }");
        assert_eq!(e.get("/jobs").unwrap()["jobs"][0], 1);
        let e = serve("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n2\r\n2}\r\n0\r\n\r\n");
        assert_eq!(e.get("/x").unwrap()["a"], 2);
    }

    #[test]
    fn an_error_status_and_a_closed_port_are_told_apart() {
        let e = serve("HTTP/1.1 404 Not Found\r\nContent-Length: 24\r\n\r\n{\"errors\":[\"Not found\"]}");
        assert!(matches!(e.get("/nope"), Err(RestError::Status { status: 404, .. })));
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let closed = Endpoint { host: "127.0.0.1".into(), port };
        assert!(matches!(closed.get("/overview"), Err(RestError::Unreachable { .. })));
        let e = serve("SSH-2.0-OpenSSH_9.2\r\n");
        assert!(matches!(e.get("/overview"), Err(RestError::NotFlink { .. })));
    }
}
