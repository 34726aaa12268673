//! A replica and a client embedded as actors in an existing actix application.
//!
//! ```text
//! cargo run --example embedded                       # founds a group of one
//! cargo run --example embedded -- 127.0.0.1:14000    # joins an existing group
//! ```
//!
//! The application's own actor (`Visits`) holds a `concoord::Client` and calls
//! the replicated Counter from its handlers; the replica's actors run on the
//! same arbiter as the application's.

use actix::prelude::*;
use concoord::actors::node::NodeOptions;
use concoord::{Client, ClientOptions, ReplicaOptions};
use std::time::Duration;

/// The application's actor: counts "visits" in the replicated Counter.
struct Visits {
    counter: Client,
    rounds_left: u32,
    done: Option<tokio::sync::oneshot::Sender<()>>,
}

#[derive(Message)]
#[rtype(result = "()")]
struct Visit;

impl Actor for Visits {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(Duration::from_millis(200), |_, ctx| {
            ctx.address().do_send(Visit);
        });
    }
}

impl Handler<Visit> for Visits {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Visit, _: &mut Context<Self>) -> Self::Result {
        let counter = self.counter.clone();
        Box::pin(
            async move {
                counter.call::<_, ()>("increment", ()).await?;
                counter.call::<_, i64>("getvalue", ()).await
            }
            .into_actor(self)
            .map(|result, act, _| {
                match result {
                    Ok(total) => println!("visits so far (replicated): {total}"),
                    Err(e) => eprintln!("counter unavailable: {e}"),
                }
                act.rounds_left = act.rounds_left.saturating_sub(1);
                if act.rounds_left == 0 {
                    if let Some(done) = act.done.take() {
                        let _ = done.send(());
                    }
                }
            }),
        )
    }
}

#[actix::main]
async fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let bootstrap: Vec<String> = std::env::args().skip(1).collect();
    let options = ReplicaOptions {
        advertise: None,
        listen: "127.0.0.1:0".parse().expect("a literal address"),
        bootstrap,
        token: String::new(),
        node: NodeOptions::default(),
        durable: None,
    };
    let object = concoord::builtin("Counter").expect("Counter is built in");
    let replica = match concoord::start_replica(object, options).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the replica: {e}");
            std::process::exit(2);
        }
    };
    println!("replica listening on {}", replica.local_addr);
    let counter = match Client::new(&replica.local_addr.to_string(), ClientOptions::default()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot start the client: {e}");
            std::process::exit(2);
        }
    };
    let (done, finished) = tokio::sync::oneshot::channel();
    Visits {
        counter,
        rounds_left: 5,
        done: Some(done),
    }
    .start();
    let _ = finished.await;
    replica.shutdown();
}
