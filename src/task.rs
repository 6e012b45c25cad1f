//! Blocking work (mounts, namespace threads, cgroup files, fsync) kept off tokio's
//! worker threads: on a 2-core node one slow mount would otherwise stall every RPC.

use crate::error::{Result, task_failed};

/// Runs `f` on tokio's blocking pool. A task that panicked or was cancelled is an
/// `Internal` error naming `what`, never a success.
pub async fn blocking<T, E>(
    what: &'static str,
    f: impl FnOnce() -> std::result::Result<T, E> + Send + 'static,
) -> Result<T>
where
    T: Send + 'static,
    E: Into<crate::error::Error> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| task_failed(what, e))?
        .map_err(Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Error, Kind};

    #[tokio::test]
    async fn a_panicking_task_is_an_internal_error() {
        let r: Result<()> = blocking("probe", || -> Result<()> { panic!("boom") }).await;
        let e = r.expect_err("a panic is not a success");
        assert_eq!(e.kind(), Kind::Internal);
        assert!(e.to_string().contains("probe task failed"), "{e}");
        let ok = blocking("probe", || Ok::<_, Error>(7)).await.unwrap();
        assert_eq!(ok, 7);
    }
}
