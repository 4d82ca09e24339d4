//! Waiting for the signals that stop the agent and the long-running commands.

use std::future::Future;

/// Completes on SIGTERM or SIGINT (Ctrl-C). The handlers are installed when this is called (it
/// must be called inside the tokio runtime), not when the future is first polled: a signal that
/// arrives while the command is still starting (opening a large outbox on an SD card, say) then
/// stops it cleanly instead of killing it with the default action.
pub fn terminated() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            // Without signal handlers the process still stops on the default action.
            std::future::pending::<()>().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
}
