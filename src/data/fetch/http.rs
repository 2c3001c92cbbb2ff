//! Downloads that survive a cut connection: bytes go to a `.part` file, and a broken transfer is
//! resumed with an HTTP `Range` request, in this run (a few attempts) or the next one.

use super::super::DataError;
use super::Reporter;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

/// How many times one download is resumed within a run before giving up.
pub const ATTEMPTS: usize = 5;

fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .build(),
    )
}

/// Downloads `url` into `part`, continuing from the bytes `part` already holds. Returns the
/// number of bytes the file holds at the end. A 4xx/5xx status is an error naming the URL.
pub fn download(url: &str, part: &Path, progress: &mut dyn Reporter) -> Result<u64, DataError> {
    let agent = agent();
    let mut last_error = String::new();
    for attempt in 0..ATTEMPTS {
        let have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
        if attempt > 0 {
            progress.resuming(have, &last_error);
            std::thread::sleep(Duration::from_millis(200 * attempt as u64));
        }
        match try_once(&agent, url, part, have, progress) {
            Ok(Transfer::Complete(n)) => return Ok(n),
            Ok(Transfer::Broken(why)) => last_error = why,
            Err(e) => return Err(e),
        }
    }
    Err(DataError::Fetch(format!(
        "download of {url} broke off {ATTEMPTS} times (last: {last_error}); run the command again to resume from {}",
        part.display()
    )))
}

enum Transfer {
    Complete(u64),
    Broken(String),
}

fn try_once(
    agent: &ureq::Agent,
    url: &str,
    part: &Path,
    have: u64,
    progress: &mut dyn Reporter,
) -> Result<Transfer, DataError> {
    let mut request = agent.get(url);
    if have > 0 {
        request = request.header("Range", format!("bytes={have}-"));
    }
    let response = match request.call() {
        Ok(r) => r,
        // No response at all: refused, unknown host, TLS. Retrying a refused connection is pointless
        // only when it never worked; the caller's attempts bound it either way.
        Err(e) => return Ok(Transfer::Broken(format!("no response from {url}: {e}"))),
    };
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let length: Option<u64> = header("content-length").and_then(|v| v.parse().ok());
    let (start, total) = match status {
        200 => (0, length),
        206 => {
            // Content-Range: bytes START-END/TOTAL
            let range = header("content-range").unwrap_or_default();
            let parsed = range
                .strip_prefix("bytes ")
                .and_then(|r| r.split_once('-'))
                .and_then(|(s, rest)| {
                    Some((
                        s.parse::<u64>().ok()?,
                        rest.split_once('/')?.1.parse::<u64>().ok(),
                    ))
                });
            match parsed {
                Some((s, total)) if s == have => (s, total),
                _ => {
                    return Err(DataError::Fetch(format!(
                        "{url} answered a request for bytes {have}- with Content-Range `{range}`"
                    )));
                }
            }
        }
        // The range starts at the end: the .part file already holds everything.
        416 if have > 0 => return Ok(Transfer::Complete(have)),
        _ => {
            return Err(DataError::Fetch(format!(
                "download of {url} failed: HTTP {status} {}",
                response.status().canonical_reason().unwrap_or("")
            )));
        }
    };
    let mut file = if start == 0 {
        File::create(part)
    } else {
        OpenOptions::new().append(true).open(part)
    }
    .map_err(|e| DataError::io(part, e))?;
    let mut body = response.into_body().into_reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut done = start;
    progress.bytes(done, total);
    loop {
        let n = match body.read(&mut buf) {
            Ok(n) => n,
            Err(e) => {
                file.sync_all().map_err(|e| DataError::io(part, e))?;
                return Ok(Transfer::Broken(format!("after {done} bytes: {e}")));
            }
        };
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n])
            .map_err(|e| DataError::io(part, e))?;
        done += n as u64;
        progress.bytes(done, total);
    }
    file.sync_all().map_err(|e| DataError::io(part, e))?;
    match total {
        Some(t) if done < t => Ok(Transfer::Broken(format!(
            "the connection closed after {done} of {t} bytes"
        ))),
        _ => Ok(Transfer::Complete(done)),
    }
}
