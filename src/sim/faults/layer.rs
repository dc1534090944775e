//! The middleware that applies fault decisions to one provider's routes.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;
use std::time::Duration;

use super::engine::Action;
use crate::sim::net::drop_connection;
use crate::sim::problem::Problem;
use crate::sim::state::SimState;

/// Fault injection for one provider, rendering errors in that provider's envelope.
#[derive(Clone)]
pub(crate) struct FaultLayer {
    state: Arc<SimState>,
    provider: &'static str,
    render: fn(Problem) -> Response,
}

impl FaultLayer {
    pub(crate) fn new(
        state: Arc<SimState>,
        provider: &'static str,
        render: fn(Problem) -> Response,
    ) -> Self {
        FaultLayer {
            state,
            provider,
            render,
        }
    }

    /// Middleware entry point (`axum::middleware::from_fn_with_state`).
    pub(crate) async fn inject(
        State(layer): State<FaultLayer>,
        req: Request,
        next: Next,
    ) -> Response {
        let uri = req.uri();
        let decision = layer
            .state
            .faults
            .decide(layer.provider, uri.path(), uri.query());
        // Shutdown cuts a delay short but still lets the call through.
        layer.sleep_unless_shutdown(decision.delay).await;
        let limited = if decision.limit_after_delay {
            layer.state.faults.limit_now(layer.provider)
        } else {
            None
        };
        if let Some(problem) = limited {
            return (layer.render)(problem.injected());
        }
        match decision.action {
            Action::Pass => next.run(req).await,
            Action::Answer(problem) => (layer.render)(problem.injected()),
            Action::Reset => drop_connection(&req),
            Action::Hang(hold) => {
                if layer.sleep_unless_shutdown(hold).await {
                    (layer.render)(
                        Problem::new(
                            StatusCode::GATEWAY_TIMEOUT,
                            "GATEWAY_TIMEOUT",
                            "The upstream service did not answer in time.",
                        )
                        .injected(),
                    )
                } else {
                    // Answering now would let a held call look successful at shutdown.
                    drop_connection(&req)
                }
            }
        }
    }

    /// Sleep; `false` when the simulator began shutting down first.
    async fn sleep_unless_shutdown(&self, duration: Duration) -> bool {
        if duration.is_zero() {
            return true;
        }
        let mut shutdown = self.state.shutdown.clone();
        tokio::select! {
            () = tokio::time::sleep(duration) => true,
            _ = shutdown.wait_for(|stop| *stop) => false,
        }
    }
}
