use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    path::Path,
    sync::Arc,
};

use super::Sink;
use crate::{BoxError, audit::AuditEvent};

/// Writes each event as one line of JSON to a file (appending) or to stdout.
///
/// Every batch is serialised into one buffer and written with a single
/// `write_all` and a flush on a blocking thread, so the runtime is never
/// blocked by the disk; with [`sync`](Self::sync) each batch is also
/// `fsync`ed before it counts as written. Control characters are escaped
/// before serialisation and JSON escapes the rest, so a line is always one event.
///
/// ```no_run
/// use steadfast::audit::{Auditor, JsonLinesSink};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
/// let auditor = Auditor::builder().build(JsonLinesSink::append("/var/log/koldly/audit.jsonl")?);
/// # let _ = auditor; Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct JsonLinesSink {
    out: Output,
    sync: bool,
}

#[derive(Debug, Clone)]
enum Output {
    File(Arc<File>),
    Stdout,
}

impl JsonLinesSink {
    /// Appends to the file at `path`, creating it if needed.
    pub fn append(path: impl AsRef<Path>) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self {
            out: Output::File(Arc::new(file)),
            sync: false,
        })
    }

    /// Writes to standard output.
    pub fn stdout() -> Self {
        Self {
            out: Output::Stdout,
            sync: false,
        }
    }

    /// Whether each batch is `fsync`ed to disk before it counts as written
    /// (default false: written to the OS and flushed). Ignored for stdout.
    pub fn sync(mut self, sync: bool) -> Self {
        self.sync = sync;
        self
    }
}

impl Sink for JsonLinesSink {
    async fn write(&mut self, events: &[AuditEvent]) -> Result<(), BoxError> {
        let mut buf = Vec::with_capacity(events.len() * 256);
        for event in events {
            serde_json::to_writer(&mut buf, event)?;
            buf.push(b'\n');
        }
        let out = self.out.clone();
        let sync = self.sync;
        tokio::task::spawn_blocking(move || -> io::Result<()> {
            match out {
                Output::File(file) => {
                    let mut file = &*file;
                    file.write_all(&buf)?;
                    file.flush()?;
                    if sync {
                        file.sync_data()?;
                    }
                }
                Output::Stdout => {
                    let mut stdout = io::stdout().lock();
                    stdout.write_all(&buf)?;
                    stdout.flush()?;
                }
            }
            Ok(())
        })
        .await??;
        Ok(())
    }
}
