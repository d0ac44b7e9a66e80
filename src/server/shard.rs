//! One Raft group on one executor: the driver loop between the network and the core.

use std::rc::Rc;
use std::time::Duration;

use futures_lite::future::poll_once;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::TcpListener;
use ringraft_protocol::{ClientRequest, ClientResponse, NodeId, PeerMessage};
use tracing::{error, info, warn};

use super::args::ShardConfig;
use super::clock::Clock;
use super::net::Network;
use super::persist::{self, Durable};
use super::ServerError;
use crate::raft::{ClientRef, Node, Ready};

/// Interval of the core's timer tick. Election timeouts and heartbeats are multiples of it,
/// so it bounds their precision.
const TICK: Duration = Duration::from_millis(5);

/// Most events fed to the core before its output is carried out. Bounds the latency one
/// batch adds to the events queued behind it.
const MAX_BATCH_EVENTS: usize = 4096;

/// An input for the core, produced by a connection task or the ticker.
pub enum Event {
    Peer {
        from: NodeId,
        message: PeerMessage,
    },
    Client {
        client: ClientRef,
        request: ClientRequest,
    },
    ClientClosed {
        conn: u64,
    },
    Tick,
}

pub async fn run_shard(config: ShardConfig) -> Result<(), ServerError> {
    let clock = Clock::new();
    let recovered = persist::recover(&config).await?;
    info!(
        node = config.id,
        dir = %config.data_dir.display(),
        term = recovered.hard_state.term,
        voted_for = ?recovered.hard_state.voted_for,
        entries = recovered.entries.len(),
        last_index = recovered.entries.last().map_or(0, |e| e.index),
        "recovered durable state"
    );

    let seed = config.id ^ clock.now_ms().rotate_left(17);
    let node = Node::new(
        config.raft.clone(),
        recovered.hard_state,
        recovered.entries,
        seed,
        clock.now_ms(),
    );

    let listener = TcpListener::bind(config.listen).map_err(|e| ServerError::Listen {
        addr: config.listen.to_string(),
        source: std::io::Error::other(e.to_string()),
    })?;
    info!(node = config.id, listen = %config.listen, members = ?config.members, storage = ?config.storage, fsync = ?config.fsync, "server started");

    let (inbox_tx, inbox_rx) = local_channel::new_unbounded();
    let inbox_tx = Rc::new(inbox_tx);
    let network = Rc::new(Network::new(&config, inbox_tx.clone()));
    network.start_peer_links();
    glommio::spawn_local(Network::accept_loop(network.clone(), listener)).detach();
    glommio::spawn_local(ticker(inbox_tx)).detach();

    drive(node, recovered.durable, inbox_rx, network, clock).await
}

async fn ticker(inbox: Rc<LocalSender<Event>>) {
    loop {
        glommio::timer::sleep(TICK).await;
        if inbox.send(Event::Tick).await.is_err() {
            return;
        }
    }
}

/// Feed events to the core in batches and carry out the output it returns.
async fn drive(
    mut node: Node,
    mut durable: Durable,
    inbox: LocalReceiver<Event>,
    network: Rc<Network>,
    clock: Clock,
) -> Result<(), ServerError> {
    // Carry out anything the core produced while starting (it may already want to persist).
    apply_ready(&mut node, &mut durable, &network, &clock).await?;

    loop {
        let Some(first) = inbox.recv().await else {
            return Ok(());
        };
        feed(&mut node, first, &clock);

        // Take whatever else is already queued without waiting: this is what turns many
        // concurrent client commands into one append and one sync.
        let mut fed = 1;
        while fed < MAX_BATCH_EVENTS {
            match poll_once(inbox.recv()).await {
                Some(Some(event)) => {
                    feed(&mut node, event, &clock);
                    fed += 1;
                }
                Some(None) => return Ok(()),
                None => break,
            }
        }

        apply_ready(&mut node, &mut durable, &network, &clock).await?;
        durable.sync_if_due().await?;
    }
}

fn feed(node: &mut Node, event: Event, clock: &Clock) {
    let now = clock.now_ms();
    match event {
        Event::Peer { from, message } => node.step_peer(now, from, message),
        Event::Client { client, request } => node.step_client(now, client, request),
        Event::ClientClosed { conn } => node.client_disconnected(conn),
        Event::Tick => node.tick(now),
    }
}

/// Carry out the core's output in the order it requires: the hard state durable first, then a
/// leader's AppendRequests, then truncation and appends durable, then every other message.
/// Repeats while acknowledging persistence produces more.
async fn apply_ready(
    node: &mut Node,
    durable: &mut Durable,
    network: &Network,
    clock: &Clock,
) -> Result<(), ServerError> {
    loop {
        let ready = node.take_ready();
        if is_empty(&ready) {
            return Ok(());
        }
        let Ready {
            hard_state,
            truncate_from,
            entries,
            messages,
            replies,
            role_change,
        } = ready;

        if let Some((role, term)) = role_change {
            network.set_role(role, term);
        }

        // Replies depend only on applied state, so they need not wait for this batch's sync.
        for (client, mut response) in replies {
            if let Ok(ClientResponse::Status(status)) = &mut response {
                status.storage = durable.storage_status();
            }
            network.reply(client, response);
        }

        // A vote must be on disk before the message granting it leaves the node.
        if let Some(state) = &hard_state {
            durable.save_hard_state(state).await.inspect_err(|e| {
                error!(node = network.node_id(), term = state.term, error = %e, "cannot persist term and vote")
            })?;
        }
        // A leader's AppendRequests need not wait for its own append: Raft lets the leader
        // replicate entries before they are durable locally, because it counts itself in a
        // quorum only up to its own persisted index. Sending them first overlaps the leader's
        // sync with the followers' (commit latency falls by about one sync). Everything else
        // waits: votes and poll responses depend on the hard state saved above, and a
        // follower's acknowledgement must not leave before its entries are durable.
        let (early, late): (Vec<_>, Vec<_>) = messages
            .into_iter()
            .partition(|envelope| matches!(envelope.message, PeerMessage::AppendRequest(_)));
        for envelope in early {
            network.send_peer(envelope);
        }

        if let Some(index) = truncate_from {
            warn!(
                node = network.node_id(),
                from = index,
                "truncating conflicting log suffix"
            );
            durable.truncate_from(index).await.inspect_err(|e| {
                error!(node = network.node_id(), from = index, error = %e, "cannot truncate log")
            })?;
        }
        if let Some(last) = entries.last() {
            let (index, term) = (last.index, last.term);
            durable.append(&entries).await.inspect_err(|e| {
                error!(node = network.node_id(), first = entries[0].index, last = index, error = %e, "cannot append to log")
            })?;
            node.persisted(clock.now_ms(), index, term);
        }

        for envelope in late {
            network.send_peer(envelope);
        }
    }
}

fn is_empty(ready: &Ready) -> bool {
    ready.hard_state.is_none()
        && ready.truncate_from.is_none()
        && ready.entries.is_empty()
        && ready.messages.is_empty()
        && ready.replies.is_empty()
        && ready.role_change.is_none()
}
