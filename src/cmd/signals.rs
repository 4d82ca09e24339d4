//! Waiting for the signals that stop the agent and the long-running commands.

use std::future::Future;

/// Completes on SIGTERM or SIGINT (Ctrl-C). The handlers are installed when this is called (it
/// must be called inside the tokio runtime), not when the future is first polled: a signal that
/// arrives while the command is still starting (opening a large outbox on an SD card, say) then
/// stops it cleanly instead of killing it with the default action.
///
/// The signals are awaited by a task of their own, which tells the returned future through a
/// oneshot channel: the agent's loop polls that future on every telegram, and a oneshot's poll
/// costs a small fraction of polling two signal streams.
pub fn terminated() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            // Without signal handlers the process still stops on the default action; `tx` is
            // kept, so the returned future never completes.
            std::future::pending::<()>().await;
            drop(tx);
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        let _ = tx.send(());
    });
    async move {
        // A closed channel (the runtime shutting down) also means: stop.
        let _ = rx.await;
    }
}
