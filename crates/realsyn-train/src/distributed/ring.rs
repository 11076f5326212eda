//! Collectives over TCP, arranged as a ring (rank r sends to r+1, receives from
//! r-1): the bandwidth-optimal all-reduce of Baidu's ring all-reduce / NCCL's ring
//! algorithm, and the ring all-gather. Each rank sends and receives 2(W-1)/W of the
//! buffer per all-reduce, whatever the world size.
//!
//! Every reduced chunk is summed by one owner and then copied around the ring, so
//! all ranks end with bit-identical sums: replicas that apply the same optimiser
//! step to them stay bit-identical, with no parameter broadcast after the start.
//!
//! Rendezvous: rank 0 listens on `MASTER_ADDR:MASTER_PORT`; every other rank
//! connects there and says who it is and on which port its own ring listener waits;
//! rank 0 answers with the table; then each rank connects to its successor. A hello
//! carries a job key (the run directory), so ranks of two jobs that picked the same
//! port refuse each other instead of mixing gradients.
//!
//! A rank that dies closes its sockets; its neighbours' next read or write fails,
//! they stop, and the failure travels around the ring, so every rank exits with a
//! message that names the rank it lost. A rank that hangs is noticed after
//! `timeout` (NCCL's and PyTorch's default is 30 minutes; `REALSYN_DIST_TIMEOUT`).

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::launch::LaunchEnv;

const MAGIC: &[u8; 8] = b"RSYNRNG1";

pub struct TcpRing {
    rank: usize,
    world: usize,
    /// To rank + 1.
    next: TcpStream,
    /// From rank - 1.
    prev: TcpStream,
    timeout: Duration,
}

impl TcpRing {
    /// Join the ring of `env.world` ranks. Blocks until every rank has arrived or
    /// `timeout` has passed.
    pub fn join(env: &LaunchEnv, job_key: u64, timeout: Duration) -> Result<Self> {
        let (rank, world) = (env.rank, env.world);
        if world < 2 {
            bail!("a ring needs at least two ranks");
        }
        let deadline = Instant::now() + timeout;
        let ring_listener =
            TcpListener::bind(("0.0.0.0", 0)).context("opening this rank's ring listener")?;
        let ring_port = ring_listener.local_addr()?.port();

        // Addresses of every rank's ring listener.
        let table: Vec<(IpAddr, u16)> = if rank == 0 {
            let rendezvous = TcpListener::bind(("0.0.0.0", env.master_port)).with_context(|| {
                format!(
                    "rank 0 cannot listen on MASTER_PORT {}: it is in use (another job?) or not allowed; pick another port",
                    env.master_port
                )
            })?;
            let mut peers: Vec<Option<(TcpStream, IpAddr, u16)>> =
                (0..world).map(|_| None).collect();
            let master_ip = resolve(&env.master_addr, env.master_port)?.ip();
            for _ in 1..world {
                let (mut s, addr) = accept_until(&rendezvous, deadline, || {
                    format!(
                        "rank 0 waited {}s for {} of {} ranks to join on port {}: start every rank with the same WORLD_SIZE and MASTER_ADDR/MASTER_PORT",
                        timeout.as_secs(),
                        peers.iter().filter(|p| p.is_none()).count() - 1,
                        world - 1,
                        env.master_port
                    )
                })?;
                s.set_read_timeout(Some(timeout))?;
                let (r, w, port) = read_hello(&mut s, job_key)?;
                if w != world {
                    bail!(
                        "rank {r} says the world has {w} ranks, rank 0 says {world}: every rank must get the same WORLD_SIZE"
                    );
                }
                if r == 0 || r >= world || peers[r].is_some() {
                    bail!("two processes joined as rank {r}: every rank needs its own RANK");
                }
                peers[r] = Some((s, addr.ip(), port));
            }
            let mut table = vec![(master_ip, ring_port)];
            table.extend(peers[1..].iter().map(|p| {
                let (_, ip, port) = p.as_ref().expect("all joined");
                (*ip, *port)
            }));
            let encoded = encode_table(&table);
            for p in peers.iter_mut().skip(1) {
                let (s, _, _) = p.as_mut().expect("all joined");
                write_frame(s, &encoded).context("sending the rank table")?;
            }
            table
        } else {
            let master = resolve(&env.master_addr, env.master_port)?;
            let mut s = connect_until(master, deadline, || {
                format!(
                    "rank {rank} could not reach rank 0 at {}:{} within {}s: is rank 0 running, and are MASTER_ADDR/MASTER_PORT the same on every rank?",
                    env.master_addr,
                    env.master_port,
                    timeout.as_secs()
                )
            })?;
            s.set_read_timeout(Some(timeout))?;
            write_hello(&mut s, job_key, rank, world, ring_port)?;
            let frame = read_frame(&mut s).with_context(|| {
                format!("rank {rank} got no rank table from rank 0 (it stopped, or another job owns that port)")
            })?;
            let mut table = decode_table(&frame, world)?;
            table[0].0 = master.ip();
            table
        };

        // Connect forward, accept from behind (the listener's backlog makes the order safe).
        let next_rank = (rank + 1) % world;
        let prev_rank = (rank + world - 1) % world;
        let (ip, port) = table[next_rank];
        let mut next = connect_until((ip, port).into(), deadline, || {
            format!("rank {rank} could not connect to rank {next_rank} at {ip}:{port}")
        })?;
        next.write_all(MAGIC)?;
        next.write_all(&job_key.to_le_bytes())?;
        next.write_all(&(rank as u64).to_le_bytes())?;
        let (mut prev, _) = accept_until(&ring_listener, deadline, || {
            format!(
                "rank {rank} waited {}s for rank {prev_rank} to connect",
                timeout.as_secs()
            )
        })?;
        prev.set_read_timeout(Some(timeout))?;
        let mut hello = [0u8; 24];
        prev.read_exact(&mut hello)
            .with_context(|| format!("rank {rank}: no greeting from rank {prev_rank}"))?;
        let from = u64::from_le_bytes(hello[16..24].try_into().expect("8 bytes")) as usize;
        if &hello[..8] != MAGIC
            || u64::from_le_bytes(hello[8..16].try_into().expect("8 bytes")) != job_key
            || from != prev_rank
        {
            bail!(
                "rank {rank} expected rank {prev_rank} of this job on its ring port and got something else"
            );
        }
        for s in [&next, &prev] {
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(timeout))?;
            s.set_write_timeout(Some(timeout))?;
        }
        Ok(Self {
            rank,
            world,
            next,
            prev,
            timeout,
        })
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn world(&self) -> usize {
        self.world
    }

    /// Send `out` to the next rank while receiving one frame from the previous one
    /// (concurrently: two ranks writing large frames at each other would otherwise
    /// both block on full socket buffers).
    fn shift(&mut self, out: &[u8], what: &str) -> Result<Vec<u8>> {
        let next = &mut self.next;
        let prev = &mut self.prev;
        let (sent, received) = std::thread::scope(|scope| {
            let sender = scope.spawn(move || write_frame(next, out));
            let received = read_frame(prev);
            (sender.join().expect("sender thread"), received)
        });
        sent.map_err(|e| self.peer_error(e, self.next_rank(), what))?;
        received.map_err(|e| self.peer_error(e, self.prev_rank(), what))
    }

    fn next_rank(&self) -> usize {
        (self.rank + 1) % self.world
    }

    fn prev_rank(&self) -> usize {
        (self.rank + self.world - 1) % self.world
    }

    /// What a failed read or write from `peer` means, in words a user can act on.
    fn peer_error(&self, e: anyhow::Error, peer: usize, what: &str) -> anyhow::Error {
        let (rank, world) = (self.rank, self.world);
        let timed_out = e
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| matches!(io.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut));
        if timed_out {
            anyhow::anyhow!(
                "rank {rank}: rank {peer} sent nothing for {}s during {what}: it hangs or is much slower than the others \
                 (raise REALSYN_DIST_TIMEOUT, in seconds, if that is expected)",
                self.timeout.as_secs()
            )
        } else {
            anyhow::anyhow!(
                "rank {rank}: lost rank {peer} during {what} ({e}): that rank has stopped (killed, crashed or out of memory), \
                 so this one stops too. Start all {world} ranks again with --resume latest"
            )
        }
    }

    /// Element-wise sum over all ranks, in place; every rank gets the same bits.
    pub fn all_reduce_sum(&mut self, data: &mut [f32], what: &str) -> Result<()> {
        self.all_reduce_sum_parts(&mut [data], what)
    }

    /// [`TcpRing::all_reduce_sum`] of the concatenation of `parts`, each summed in
    /// its own memory: gradients need not be packed into one buffer first.
    pub fn all_reduce_sum_parts(&mut self, parts: &mut [&mut [f32]], what: &str) -> Result<()> {
        let w = self.world;
        let total = values(parts);
        let bounds: Vec<usize> = (0..=w).map(|i| i * total / w).collect();
        // chunks[c]: the pieces of the parts that make up chunk c, in order.
        let mut chunks: Vec<Vec<&mut [f32]>> = (0..w).map(|_| Vec::new()).collect();
        let mut at = 0;
        for part in parts.iter_mut() {
            let mut rest: &mut [f32] = part;
            while !rest.is_empty() {
                let c = bounds.partition_point(|&b| b <= at) - 1;
                let n = (bounds[c + 1] - at).min(rest.len());
                let (head, tail) = std::mem::take(&mut rest).split_at_mut(n);
                at += head.len();
                chunks[c].push(head);
                rest = tail;
            }
        }
        // Reduce-scatter: after w-1 shifts rank r holds the full sum of chunk r+1.
        for s in 0..w - 1 {
            let send = (self.rank + w - s) % w;
            let recv = (self.rank + 2 * w - s - 1) % w;
            let (out, into) = disjoint(&mut chunks, send, recv);
            self.exchange(out, into, |x, v| *x += v, what)?;
        }
        // All-gather the reduced chunks.
        for s in 0..w - 1 {
            let send = (self.rank + 1 + w - s) % w;
            let recv = (self.rank + w - s) % w;
            let (out, into) = disjoint(&mut chunks, send, recv);
            self.exchange(out, into, |x, v| *x = v, what)?;
        }
        Ok(())
    }

    /// Send `out` to the next rank while `combine`-ing what the previous rank sends
    /// into `into`, both streamed in pieces of `PIECE` bytes: the sum of one piece
    /// overlaps the transfer of the next, and no buffer of the chunk's size is
    /// allocated (each was a fresh mapping to page in, and the whole chunk had to
    /// arrive before its sum began).
    fn exchange(
        &mut self,
        out: &[&mut [f32]],
        into: &mut [&mut [f32]],
        combine: impl Fn(&mut f32, f32),
        what: &str,
    ) -> Result<()> {
        let next = &mut self.next;
        let prev = &mut self.prev;
        let (sent, received) = std::thread::scope(|scope| {
            let sender = scope.spawn(move || send_floats(next, out));
            let received = receive_floats(prev, into, combine);
            (sender.join().expect("sender thread"), received)
        });
        sent.map_err(|e| self.peer_error(e.into(), self.next_rank(), what))?;
        match received {
            Err(e) => Err(self.peer_error(e.into(), self.prev_rank(), what)),
            Ok(Some(got)) => Err(size_mismatch(got, values(into), what)),
            Ok(None) => Ok(()),
        }
    }

    /// Every rank's `mine`, in rank order.
    pub fn all_gather(&mut self, mine: &[u8], what: &str) -> Result<Vec<Vec<u8>>> {
        let w = self.world;
        let mut blocks: Vec<Option<Vec<u8>>> = vec![None; w];
        blocks[self.rank] = Some(mine.to_vec());
        for s in 0..w - 1 {
            let send = (self.rank + w - s) % w;
            let recv = (self.rank + 2 * w - s - 1) % w;
            let out = blocks[send].clone().expect("held since the previous shift");
            blocks[recv] = Some(self.shift(&out, what)?);
        }
        Ok(blocks
            .into_iter()
            .map(|b| b.expect("all gathered"))
            .collect())
    }

    /// Rank 0's `data` on every rank, passed once around the ring (rank 0 sends,
    /// each other rank receives and forwards to its successor, the last one keeps
    /// it): every link carries the data once, where an all-gather would carry
    /// `world` copies (a whole model's weights at start-up).
    pub fn broadcast(&mut self, data: Vec<u8>, what: &str) -> Result<Vec<u8>> {
        let data = if self.rank == 0 {
            data
        } else {
            read_frame(&mut self.prev).map_err(|e| self.peer_error(e, self.prev_rank(), what))?
        };
        if self.next_rank() != 0 {
            write_frame(&mut self.next, &data)
                .map_err(|e| self.peer_error(e, self.next_rank(), what))?;
        }
        Ok(data)
    }
}

/// `f32`s as little-endian bytes (the wire format of every float collective).
pub(crate) fn to_bytes(xs: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(xs.len() * 4);
    for x in xs {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

/// The inverse of [`to_bytes`] (a trailing partial value is ignored).
pub(crate) fn from_bytes(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect()
}

fn size_mismatch(got: usize, want: usize, what: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "ranks disagree on the size of {what} ({got} vs {want} values): every rank must run the same recipe and model"
    )
}

/// Bytes a ring step streams at a time.
const PIECE: usize = 1 << 20;

/// Chunks `out` and `into` (different) of `chunks`, one to read, one to write.
fn disjoint<T>(chunks: &mut [T], out: usize, into: usize) -> (&T, &mut T) {
    assert_ne!(out, into, "a ring step sends and receives different chunks");
    if out < into {
        let (a, b) = chunks.split_at_mut(into);
        (&a[out], &mut b[0])
    } else {
        let (a, b) = chunks.split_at_mut(out);
        (&b[0], &mut a[into])
    }
}

fn values(slices: &[&mut [f32]]) -> usize {
    slices.iter().map(|s| s.len()).sum()
}

/// One frame of `slices`' values in order as little-endian bytes (a length, then the
/// values), written `PIECE` bytes at a time.
fn send_floats(s: &mut TcpStream, slices: &[&mut [f32]]) -> std::io::Result<()> {
    s.write_all(&((values(slices) * 4) as u64).to_le_bytes())?;
    let mut buf = Vec::with_capacity(PIECE);
    for slice in slices {
        let mut rest: &[f32] = slice;
        while !rest.is_empty() {
            let (now, later) = rest.split_at(((PIECE - buf.len()) / 4).min(rest.len()));
            for x in now {
                buf.extend_from_slice(&x.to_le_bytes());
            }
            if buf.len() == PIECE {
                s.write_all(&buf)?;
                buf.clear();
            }
            rest = later;
        }
    }
    s.write_all(&buf)?;
    s.flush()
}

/// Read one [`send_floats`] frame into `slices` with `combine`, at most `PIECE`
/// bytes at a time; `Some(values)` (the frame read and dropped) if it holds another
/// number of values than `slices`.
fn receive_floats(
    s: &mut TcpStream,
    slices: &mut [&mut [f32]],
    combine: impl Fn(&mut f32, f32),
) -> std::io::Result<Option<usize>> {
    let mut len = [0u8; 8];
    s.read_exact(&mut len)?;
    let len = u64::from_le_bytes(len) as usize;
    if len != values(slices) * 4 {
        // Drained all the same, so that the sender finishes and both sides report.
        std::io::copy(&mut (&mut *s).take(len as u64), &mut std::io::sink())?;
        return Ok(Some(len / 4));
    }
    let mut buf = vec![0u8; PIECE.min(len)];
    for slice in slices.iter_mut() {
        for piece in slice.chunks_mut(PIECE / 4) {
            let bytes = &mut buf[..piece.len() * 4];
            s.read_exact(bytes)?;
            for (x, b) in piece.iter_mut().zip(bytes.chunks_exact(4)) {
                combine(x, f32::from_le_bytes(b.try_into().expect("4 bytes")));
            }
        }
    }
    Ok(None)
}

fn write_frame(s: &mut TcpStream, data: &[u8]) -> Result<()> {
    s.write_all(&(data.len() as u64).to_le_bytes())?;
    s.write_all(data)?;
    s.flush()?;
    Ok(())
}

fn read_frame(s: &mut TcpStream) -> Result<Vec<u8>> {
    let mut len = [0u8; 8];
    s.read_exact(&mut len)?;
    let len = u64::from_le_bytes(len) as usize;
    let mut buf = vec![0u8; len];
    s.read_exact(&mut buf)?;
    Ok(buf)
}

fn write_hello(s: &mut TcpStream, job: u64, rank: usize, world: usize, port: u16) -> Result<()> {
    let mut b = MAGIC.to_vec();
    b.extend_from_slice(&job.to_le_bytes());
    b.extend_from_slice(&(rank as u64).to_le_bytes());
    b.extend_from_slice(&(world as u64).to_le_bytes());
    b.extend_from_slice(&port.to_le_bytes());
    write_frame(s, &b)
}

fn read_hello(s: &mut TcpStream, job: u64) -> Result<(usize, usize, u16)> {
    let b = read_frame(s).context("reading a rank's hello")?;
    if b.len() != 34 || &b[..8] != MAGIC {
        bail!("something that is not a realsyn rank connected to MASTER_PORT");
    }
    let u = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
    if u(8) != job {
        bail!(
            "a rank of another job connected to MASTER_PORT (its run directory differs): give each job its own MASTER_PORT"
        );
    }
    Ok((
        u(16) as usize,
        u(24) as usize,
        u16::from_le_bytes([b[32], b[33]]),
    ))
}

fn encode_table(table: &[(IpAddr, u16)]) -> Vec<u8> {
    table
        .iter()
        .map(|(ip, port)| format!("{ip} {port}"))
        .collect::<Vec<_>>()
        .join("\n")
        .into_bytes()
}

fn decode_table(b: &[u8], world: usize) -> Result<Vec<(IpAddr, u16)>> {
    let text = std::str::from_utf8(b).context("rank table")?;
    let table: Vec<(IpAddr, u16)> = text
        .lines()
        .map(|l| {
            let (ip, port) = l.split_once(' ').context("rank table line")?;
            Ok((ip.parse()?, port.parse()?))
        })
        .collect::<Result<_>>()?;
    if table.len() != world {
        bail!(
            "the rank table lists {} ranks, expected {world}",
            table.len()
        );
    }
    Ok(table)
}

fn resolve(host: &str, port: u16) -> Result<std::net::SocketAddr> {
    (host, port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve MASTER_ADDR {host}"))?
        .find(|a| a.is_ipv4())
        .or_else(|| (host, port).to_socket_addrs().ok()?.next())
        .with_context(|| format!("MASTER_ADDR {host} has no address"))
}

fn connect_until(
    addr: std::net::SocketAddr,
    deadline: Instant,
    why: impl Fn() -> String,
) -> Result<TcpStream> {
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Ok(s) => return Ok(s),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => bail!("{}: {e}", why()),
        }
    }
}

fn accept_until(
    listener: &TcpListener,
    deadline: Instant,
    why: impl Fn() -> String,
) -> Result<(TcpStream, std::net::SocketAddr)> {
    listener.set_nonblocking(true)?;
    loop {
        match listener.accept() {
            Ok((s, a)) => {
                s.set_nonblocking(false)?;
                return Ok((s, a));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => bail!("{}", why()),
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distributed::launch::Launcher;

    fn free_port() -> u16 {
        crate::distributed::launch::local_rendezvous_port().unwrap()
    }

    fn rings(world: usize, port: u16, job: impl Fn(usize) -> u64) -> Vec<Result<TcpRing>> {
        let handles: Vec<_> = (0..world)
            .map(|rank| {
                let env = LaunchEnv {
                    launcher: Launcher::Torchrun,
                    rank,
                    world,
                    local_rank: rank,
                    master_addr: "127.0.0.1".into(),
                    master_port: port,
                };
                let key = job(rank);
                std::thread::spawn(move || TcpRing::join(&env, key, Duration::from_secs(5)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    }

    #[test]
    fn ring_collectives_agree_with_a_plain_sum() {
        // Lengths that do and do not divide by the world; the last streams in
        // several pieces.
        const LENS: [usize; 5] = [1, 5, 1000, 1003, 3 * PIECE / 4 + 1];
        let input = |rank: usize, len: usize| -> Vec<f32> {
            // 1003 values are not exact in f32 sums: order matters there, and every
            // rank must still end with the same bits.
            (0..len)
                .map(|i| match len {
                    1003 => ((i * 31 + rank * 7) as f32).sin() * 1e3,
                    _ => (i * 31 + rank * 7) as f32 * 0.25 - 3.0,
                })
                .collect()
        };
        for world in [2, 3, 4] {
            let port = free_port();
            // Each rank on its own thread, like its own process.
            let handles: Vec<_> = rings(world, port, |_| 7)
                .into_iter()
                .map(|ring| {
                    let mut ring = ring.unwrap();
                    std::thread::spawn(move || {
                        let mut out = Vec::new();
                        for len in LENS {
                            let mut data = input(ring.rank(), len);
                            ring.all_reduce_sum(&mut data, "a test").unwrap();
                            out.push(data);
                        }
                        let gathered = ring.all_gather(&[ring.rank() as u8; 3], "a test").unwrap();
                        assert_eq!(
                            gathered,
                            (0..world).map(|r| vec![r as u8; 3]).collect::<Vec<_>>()
                        );
                        let mine = if ring.rank() == 0 {
                            vec![9u8; 5]
                        } else {
                            Vec::new()
                        };
                        assert_eq!(ring.broadcast(mine, "a test").unwrap(), vec![9u8; 5]);
                        out
                    })
                })
                .collect();
            let results: Vec<Vec<Vec<f32>>> =
                handles.into_iter().map(|h| h.join().unwrap()).collect();
            for (k, len) in LENS.iter().enumerate() {
                let inputs: Vec<Vec<f32>> = (0..world).map(|r| input(r, *len)).collect();
                let want: Vec<f32> = (0..*len)
                    .map(|i| inputs.iter().map(|v| v[i]).sum())
                    .collect();
                for r in &results {
                    assert!(
                        r[k].iter()
                            .zip(&results[0][k])
                            .all(|(a, b)| a.to_bits() == b.to_bits())
                    );
                    for (got, want) in r[k].iter().zip(&want) {
                        assert!(
                            (got - want).abs() <= 1e-3 * want.abs().max(1.0),
                            "world {world} len {len}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn parts_sum_as_their_concatenation() {
        // Gradients of many sizes, an empty one among them, crossing chunk and piece
        // boundaries: summed in place, the same bits as one packed buffer.
        const SIZES: [usize; 6] = [7, 0, 1, PIECE / 4 + 3, 5, 1000];
        let handles: Vec<_> = rings(3, free_port(), |_| 7)
            .into_iter()
            .map(|ring| {
                let mut ring = ring.unwrap();
                std::thread::spawn(move || {
                    let total: usize = SIZES.iter().sum();
                    let r = ring.rank();
                    let input: Vec<f32> = (0..total)
                        .map(|i| ((i * 13 + r * 5) as f32).sin() * 100.0)
                        .collect();
                    let mut packed = input.clone();
                    ring.all_reduce_sum(&mut packed, "a test").unwrap();
                    let mut owned: Vec<Vec<f32>> = Vec::new();
                    let mut at = 0;
                    for n in SIZES {
                        owned.push(input[at..at + n].to_vec());
                        at += n;
                    }
                    let mut parts: Vec<&mut [f32]> =
                        owned.iter_mut().map(|v| v.as_mut_slice()).collect();
                    ring.all_reduce_sum_parts(&mut parts, "a test").unwrap();
                    let parted: Vec<f32> = owned.concat();
                    assert!(
                        packed
                            .iter()
                            .zip(&parted)
                            .all(|(a, b)| a.to_bits() == b.to_bits()),
                        "rank {r}: parts differ from the packed sum"
                    );
                    packed
                })
            })
            .collect();
        let sums: Vec<Vec<f32>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(sums.iter().all(|s| s == &sums[0]));
    }

    #[test]
    fn ranks_that_disagree_on_the_size_say_so() {
        // Larger than the sockets' buffers: a rank that stopped reading at the
        // length would leave its peer's sender blocked until the timeout.
        let handles: Vec<_> = rings(2, free_port(), |_| 7)
            .into_iter()
            .map(|ring| {
                let mut ring = ring.unwrap();
                std::thread::spawn(move || {
                    let mut data = vec![1.0f32; 4_000_000 + 8 * ring.rank()];
                    ring.all_reduce_sum(&mut data, "a test")
                        .unwrap_err()
                        .to_string()
                })
            })
            .collect();
        for h in handles {
            let e = h.join().unwrap();
            assert!(e.contains("ranks disagree on the size of a test"), "{e}");
        }
    }

    #[test]
    fn a_rank_of_another_job_is_refused() {
        let port = free_port();
        let results = rings(2, port, |rank| rank as u64);
        let err = results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(err.contains("another job"), "{err}");
    }

    #[test]
    fn a_lost_rank_is_named() {
        let port = free_port();
        let mut rings: Vec<TcpRing> = rings(2, port, |_| 1)
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        drop(rings.pop()); // rank 1 dies
        let mut data = vec![1.0f32; 100];
        let e = rings[0]
            .all_reduce_sum(&mut data, "the gradient all-reduce")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("lost rank 1 during the gradient all-reduce"),
            "{e}"
        );
        assert!(e.contains("--resume latest"), "{e}");
    }
}
