//! A real Envoy rate-limit service, started by the test on a free loopback port: the
//! `rls_server` example's service (the `limitador` crate's limiter behind tonic), stopped
//! when dropped or by [`RlsServer::stop`] (the service "dies").

use std::net::SocketAddr;

#[path = "../../../examples/rls_server/service.rs"]
mod service;

pub struct RlsServer {
    pub addr: SocketAddr,
    stop: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RlsServer {
    /// A service enforcing `limits` (Limitador's limits, as JSON).
    pub async fn start(limits: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the rate-limit service");
        let addr = listener.local_addr().expect("its address");
        let service = service::Service::new(limits).expect("limits");
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let _ = service
                .serve(listener, async {
                    let _ = stopped.await;
                })
                .await;
        });
        Self {
            addr,
            stop: std::sync::Mutex::new(Some(stop)),
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving: its connections are closed, the port then refuses new ones.
    pub fn stop(&self) {
        if let Some(stop) = self.stop.lock().expect("lock").take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for RlsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
