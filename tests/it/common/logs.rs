//! Captures every log line of the current thread (and so of a current-thread test runtime) at
//! TRACE, for tests that check what a log would show an operator.

use std::io::Write;
use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::MakeWriter;

#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Panics naming the first secret found in the logs (not the log itself, which may be long).
    pub fn assert_free_of(&self, secrets: &[&str]) {
        let text = self.text();
        assert!(
            !text.is_empty(),
            "nothing was logged: the capture is not working"
        );
        for s in secrets {
            assert!(!s.is_empty());
            if let Some(at) = text.find(s) {
                let line = text[..at].rsplit('\n').next().unwrap_or_default();
                panic!("a secret appears in the logs, in the line starting: {line:.200}");
            }
        }
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

/// Installs a TRACE subscriber (every crate, JSON as in production) for the current thread
/// until the guard drops.
pub fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .json()
        .flatten_event(true)
        .with_writer(logs.clone())
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    (logs, guard)
}
