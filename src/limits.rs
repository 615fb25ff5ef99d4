//! Every cap and deadline the server enforces, in one place. Each has a
//! default, a line saying why it is that, and a `serve` flag to change it.
//! Limits bound what a peer can make the server hold: connections, time, and
//! memory per connection.

use std::time::Duration;

/// The server's limits. `Limits::default()` is what `ferry serve` uses when
/// no flag says otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame header accepted, in bytes. Headers carry names and
    /// options, never data; 64 KiB leaves room for long paths and is small
    /// enough that a hostile length prefix costs nothing.
    pub max_header_bytes: usize,
    /// Connections served at once, authenticated or not. Past this a new
    /// client is answered `busy` and closed. 1024 fits the default open-file
    /// limit of most systems with room for files being transferred.
    pub max_connections: usize,
    /// Connections of the token-less listeners (`--seed-compat`,
    /// `--tcp-echo`) served at once, apart from `max_connections` so that
    /// they never take a token holder's place. Past it, new ones wait in
    /// the kernel's accept queue. 64 is plenty for the tutorial's clients
    /// on one machine.
    pub max_unframed_connections: usize,
    /// Connections still in their TLS handshake or `hello`. Kept apart from
    /// `max_connections` so that clients which never say hello cannot crowd
    /// out real ones; 512 admits a burst of hundreds of clients connecting
    /// at once from one address. Past it, new connections wait in the
    /// kernel's accept queue.
    pub max_handshakes: usize,
    /// Time a new connection has to finish TLS and `hello`. Ten seconds is
    /// plenty on any real network and short enough to shed idle sockets.
    pub hello_timeout: Duration,
    /// Time an authenticated connection may sit between requests before
    /// the server closes it.
    pub idle_timeout: Duration,
    /// Time a request may go without progress: the peer must send the next
    /// part of a body, or take the next part of a reply, within it.
    pub request_timeout: Duration,
    /// On SIGINT/SIGTERM, time requests in flight get to finish before the
    /// server exits anyway.
    pub drain_timeout: Duration,
    /// Reply bytes buffered per connection before the server waits for the
    /// peer to read. With the codec's read buffer
    /// ([`crate::protocol::codec::max_read_buffer_bytes`]), this bounds the
    /// memory one connection can hold.
    pub max_write_buffer_bytes: usize,
    /// Largest manifest, wants list or directory listing, in bytes. About
    /// 100 bytes a file, so 64 MiB covers trees of over half a million
    /// files while bounding what one request can make the server hold.
    pub max_list_bytes: usize,
    /// Commands `exec` runs at once. Each holds a process and its pipes;
    /// 16 keeps a small server responsive.
    pub max_commands: usize,
    /// Output a detachable job keeps for a client that reconnects
    /// (`--job-buffer`), oldest dropped first. 8 MiB is minutes of a busy
    /// build log; with [`MAX_JOBS`] jobs it bounds what jobs hold.
    pub job_buffer_bytes: usize,
    /// The first penalty of a source that failed the token, sent garbage
    /// before hello or let the hello deadline pass: refused at accept this
    /// long. 5 s barely slows a person who mistyped a token and stops a
    /// guesser cold, as OpenSSH's `PerSourcePenalties` `authfail:5s`.
    pub penalty_min: Duration,
    /// The longest penalty; each failure doubles the last up to it. Ten
    /// minutes, as OpenSSH's `max:600s`: after eight failures in a row a
    /// source gets six tries an hour. Also how long a source's doubling is
    /// remembered after its penalty ends.
    pub penalty_max: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_header_bytes: 64 * 1024,
            max_connections: 1024,
            max_unframed_connections: 64,
            max_handshakes: 512,
            hello_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            request_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(10),
            max_write_buffer_bytes: 256 * 1024,
            max_list_bytes: 64 * 1024 * 1024,
            max_commands: 16,
            job_buffer_bytes: 8 * 1024 * 1024,
            penalty_min: Duration::from_secs(5),
            penalty_max: Duration::from_secs(600),
        }
    }
}

impl Limits {
    /// The most memory one connection's frame buffers can hold: the
    /// codec's read buffer (a full header, a body read, the read-ahead) and
    /// the write buffer.
    pub fn max_buffer_bytes_per_connection(&self) -> usize {
        crate::protocol::codec::max_read_buffer_bytes(self.max_header_bytes)
            + self.max_write_buffer_bytes
    }

    /// Checks that the limits make sense together.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_header_bytes < 256 {
            return Err("--max-header-bytes must be at least 256".into());
        }
        if self.max_header_bytes > u32::MAX as usize {
            return Err("--max-header-bytes must fit in the 4-byte length prefix".into());
        }
        if self.max_connections == 0
            || self.max_handshakes == 0
            || self.max_unframed_connections == 0
        {
            return Err(
                "--max-connections, --max-handshakes and --max-unframed-connections must be \
                 at least 1"
                    .into(),
            );
        }
        for (name, value) in [
            ("--hello-timeout", self.hello_timeout),
            ("--idle-timeout", self.idle_timeout),
            ("--request-timeout", self.request_timeout),
        ] {
            if value.is_zero() {
                return Err(format!("{name} must be more than 0 seconds"));
            }
        }
        if self.penalty_min.is_zero() || self.penalty_max < self.penalty_min {
            return Err(
                "--penalty-min must be more than 0 seconds and at most --penalty-max; \
                 to turn penalties off, pass --no-penalties"
                    .into(),
            );
        }
        if self.job_buffer_bytes < 1024 {
            return Err("--job-buffer must be at least 1024 bytes".into());
        }
        Ok(())
    }
}

/// How long a detachable job outlives its connection when the client
/// asks for no other linger: a minute covers a reconnect after a network
/// change, and a forgotten job does not run for long.
pub const DEFAULT_JOB_LINGER: Duration = Duration::from_secs(60);

/// The longest linger a client may ask for: a day, so a job never becomes
/// a daemon nobody remembers.
pub const MAX_JOB_LINGER: Duration = Duration::from_secs(24 * 60 * 60);

/// Detachable jobs one client identity may hold at once, running or
/// waiting to be collected: enough for a few terminals.
pub const MAX_JOBS_PER_CLIENT: usize = 8;

/// Detachable jobs the server holds at once; each keeps up to
/// `job_buffer_bytes` of output, so this bounds their memory (32 x 8 MiB).
pub const MAX_JOBS: usize = 32;

/// Largest output (stdout and stderr together) of a command run through
/// the seed-compat listener. Its reply header carries the total size, so
/// the output is held in memory until the command ends; 8 MiB is far more
/// than the tutorial's commands print, and with at most `max_commands`
/// running it bounds what they can make the server hold (128 MiB by
/// default). Past it the command is killed and the client told why.
pub const MAX_COMPAT_OUTPUT_BYTES: usize = 8 * 1024 * 1024;

/// A seed-compat text command is everything its client sent in one go:
/// bytes that arrive with less than this pause between them. The
/// tutorial's client sends no terminator, and one `send` can arrive in
/// several reads (`rm -rf DIR/old` as `rm -rf DIR/` and `old`). 100 ms is
/// over twice Linux's 40 ms delayed ACK, which can hold back the second
/// segment of a send behind Nagle, and too short for a person to notice.
pub const COMMAND_PAUSE: Duration = Duration::from_millis(100);

/// Bytes of one peer-controlled field (a command, a name, a path) a log
/// line shows; past it the field is cut and its length noted. 256 bytes
/// show any real name or command, and keep a line short whatever a peer
/// sends (see [`crate::log::peer_text`]).
pub const MAX_LOGGED_PEER_BYTES: usize = 256;

/// Bytes of one log line, whatever it holds; past it the line is cut.
/// A backstop for text that reached a line without [`crate::log::peer_text`]:
/// a few capped fields (escaping makes a byte at most six) and a message
/// fit.
pub const MAX_LOG_LINE_BYTES: usize = 16 * 1024;

/// Log lines waiting for stderr, in bytes. A stderr that is slow or not
/// read at all (a full pipe) costs lines past this, never memory or a
/// stalled connection; 1 MiB holds thousands of lines, a long burst.
pub const LOG_QUEUE_BYTES: usize = 1024 * 1024;

/// At exit, how long the runtime waits for blocking threads (a file being
/// hashed, a UDP service between datagrams) after the drain before
/// leaving them: with [`LOG_FLUSH_TIMEOUT`], what shutdown may take beyond
/// `--drain-timeout` stays under a second.
pub const BLOCKING_SHUTDOWN_TIMEOUT: Duration = Duration::from_millis(500);

/// At exit, how long the last log lines get to reach stderr. A stderr
/// that takes them does so in microseconds; one that does not (a full
/// pipe) must not hold the exit.
pub const LOG_FLUSH_TIMEOUT: Duration = Duration::from_millis(250);

/// The chat hub's caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatLimits {
    /// Members at once, framed and gateway together.
    pub max_members: usize,
    /// Events queued for one framed member before it is dropped as too
    /// slow.
    pub max_queue: usize,
    /// Longest message, in bytes.
    pub max_text_bytes: usize,
    /// Longest name or room name, in bytes.
    pub max_name_bytes: usize,
}

/// The chat hub's caps. 1024 members matches `--max-connections`; a
/// queue of 256 events lets a reader fall a burst behind, and past it the
/// reader is dropped instead of buffered (about 256 × 4 KiB = 1 MiB at
/// most per member); 4 KiB is a long message; 32 bytes a long name.
pub const CHAT: ChatLimits = ChatLimits {
    max_members: 1024,
    max_queue: 256,
    max_text_bytes: 4096,
    max_name_bytes: 32,
};

/// Users the UDP chat gateway keeps at once; past it a new address is
/// told the gateway is full. A quarter of the hub: anyone can send a
/// datagram from many addresses, and they must not crowd out the clients
/// with the token.
pub const CHAT_GATEWAY_MAX_USERS: usize = 256;

/// Datagrams waiting to go out to the chat gateway's users; past it they
/// are lost, as UDP may lose them anyway. 1024 holds a burst of events for
/// every user the gateway keeps, at a few hundred bytes each.
pub const CHAT_GATEWAY_OUTGOING_QUEUE: usize = 1024;

/// Bytes every UDP service reads a datagram into. The largest UDP payload
/// (65,507 bytes over IPv4) fits, so nothing is cut silently as the
/// tutorial's `recvfrom(1024)` cuts it; a service that takes less refuses
/// larger datagrams explicitly.
pub const UDP_RECEIVE_BUFFER_BYTES: usize = 64 * 1024;

/// Largest UDP datagram payload that can be sent over IPv4: the most an
/// echo reply may be.
pub const UDP_MAX_PAYLOAD_BYTES: usize = 65_507;

/// The most a datagram service's reply may be, as a multiple of the
/// datagram it answers, both counted on the wire (IP and UDP headers
/// included). A forged source makes the reply go to a victim; at 4x it is
/// not worth forging, while the tutorial's empty time request (28 bytes on
/// the wire over IPv4) still gets its 19-byte date.
pub const DATAGRAM_MAX_AMPLIFICATION: usize = 4;

/// Datagrams a source may send at once, to all the datagram services
/// together, before it is answered no more (SNTP answers with a `RATE`
/// Kiss-o'-Death). A client's `iburst` start sends 4 to 8 SNTP requests.
pub const DATAGRAM_RATE_BURST: u32 = 8;

/// After its burst, a source may send one datagram per this interval; real
/// NTP clients poll every 64 s or slower, and a person typing into the chat
/// gateway rarely sends more than a line a second for long.
pub const DATAGRAM_RATE_INTERVAL: Duration = Duration::from_secs(1);

/// Sources whose datagram rate is tracked; past this the refilled and then
/// the least recently seen are forgotten, so a flood of spoofed sources
/// costs bounded memory.
pub const DATAGRAM_RATE_MAX_SOURCES: usize = 4096;

/// Bytes of one reply datagram of the tutorial's UDP command service
/// (`--seed-compat-udp`): its client reads each with `recvfrom(1024)`, which
/// drops whatever a datagram holds past that, so output goes in pieces of
/// this size. Also the longest command taken: the tutorial's server reads
/// one `recvfrom(1024)`, and a command cut there must not run.
pub const UDP_EXEC_DATAGRAM_BYTES: usize = 1024;

/// Reply datagrams the UDP command service may send one source address in
/// a burst: a command's output, markers and refusals together. A UDP
/// source can be forged, so one small datagram must not buy an unbounded
/// flood at a victim: 64 datagrams is 64 KiB (of
/// [`UDP_EXEC_DATAGRAM_BYTES`]), more than the tutorial's `ls` or `ps`
/// print, and output past it is cut with a marker datagram. It is also the
/// most output a command's run holds in memory.
pub const UDP_EXEC_REPLY_BURST: u32 = 64;

/// After its burst, a source earns one more reply datagram per this
/// interval: a full burst again every 10 s (64 KiB per 10 s, about
/// 52 kbit/s), too little to be worth forging and plenty for a person
/// typing commands.
pub const UDP_EXEC_REPLY_INTERVAL: Duration =
    Duration::from_nanos(10_000_000_000 / UDP_EXEC_REPLY_BURST as u64);

/// How long a pairing code from `ferry invite` stays valid: long enough to
/// walk to the other machine, short enough that a code seen on a screen
/// soon means nothing.
pub const INVITE_TTL: Duration = Duration::from_secs(10 * 60);

/// Wrong tries a pairing code allows before it is spent: each online guess
/// of its 24 bits has one chance in 16.7 million.
pub const INVITE_TRIES: u8 = 3;

/// Sources whose login penalties are tracked at once, as OpenSSH's
/// `max-sources4` and `max-sources6`. Past it the penalty that ends soonest
/// is forgotten, so a flood of addresses costs bounded memory (under 16 MiB,
/// see the test below) and evicts the penalties that matter least.
pub const PENALTY_MAX_SOURCES: usize = 65_536;

/// How long a partial file may go unwritten before a later transfer into
/// its directory removes it (on either end). A transfer interrupted and
/// run again within a week resumes; one given up on stops holding space
/// soon after.
pub const PARTIAL_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Directories a receiving transfer sweeps for stale partial files when it
/// ends, so one transfer of a vast tree does not list every directory.
pub const MAX_SWEPT_DIRS: usize = 1024;

/// Paths a `glob` may match after any one of its components. A pattern
/// names files to fetch or remove one request each, so tens of thousands
/// is already more than a person means; a whole tree goes with `-r`.
pub const MAX_GLOB_MATCHES: usize = 65_536;

/// Directory entries a `glob` may read in all, so a pattern such as
/// `*/*/*/*` over a vast tree costs the server a second or so of listing,
/// not minutes.
pub const MAX_GLOB_NAMES_READ: usize = 1 << 20;

/// How long a shell hung up at shutdown (its terminal closed, as when a
/// line drops) has to exit before its process group is killed: enough for
/// a shell to save its history, short beside the drain deadline.
pub const SHELL_HANGUP_GRACE: Duration = Duration::from_secs(2);

/// How long a send of `exec` or `shell` output to a client that stops
/// reading may stall before the command is killed: an hour, because a
/// paused pager is not an error. The stall costs no memory (the command's
/// pipes fill and it waits), only a command slot.
pub const STALLED_CLIENT_TIMEOUT: Duration = Duration::from_secs(3600);

/// Bytes of a command's output read at once (`exec`, `shell`), one data
/// frame each: 64 KiB is a pipe's whole buffer on Linux, so a chatty
/// command goes out in few frames, and a command costs at most this per
/// output stream while the client is slow.
pub const PIPE_READ_BYTES: usize = 64 * 1024;

/// Largest stdin data frame accepted from an `exec` or `shell` client; the
/// body is read in chunks and written to the command one chunk at a time,
/// so this caps a frame, not memory. Clients send at most
/// [`PIPE_READ_BYTES`].
pub const MAX_STDIN_FRAME_BYTES: u64 = 1024 * 1024;

/// A raw echo connection's whole buffer (`--tcp-echo`): what it reads at
/// once and holds. 16 KiB echoes a line or a paste in one write, and a
/// thousand such connections hold 16 MiB.
pub const RAW_ECHO_BUFFER_BYTES: usize = 16 * 1024;

/// Bytes the seed-compat door writes to its socket per write, so the
/// request timeout measures progress and not the whole reply.
pub const COMPAT_WRITE_CHUNK_BYTES: usize = 256 * 1024;

/// Longest format the UDP time service accepts, in bytes. Each specifier
/// expands to a few dozen bytes at most, so replies stay far below a
/// datagram's limit.
pub const TIME_MAX_FORMAT_BYTES: usize = 1024;

/// How long a connection waits between requests before it hands back its
/// buffers; short enough that idle connections are cheap, long enough that
/// a busy one keeps its buffers warm.
pub const IDLE_BUFFER_LINGER: Duration = Duration::from_millis(200);

/// How long a closing connection gives the peer to take a last error
/// frame; a second is ample on any live link and keeps a refused or
/// misbehaving peer from holding the connection.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Pending connections the kernel queues for each listener; the kernel caps
/// it at `net.core.somaxconn`. Large, so a burst of clients is not refused
/// while the server is at its handshake limit.
pub const LISTEN_BACKLOG: i32 = 4096;

/// `ferry sync`: the most levels a file's tree of hashes may have. An
/// honest tree has at least two children per node, so its levels stay under
/// log2 of its chunk count (about 16); a sender grinding chunk hashes could
/// make it deeper, each level a round trip.
pub const SYNC_MAX_TREE_LEVELS: usize = 64;

/// `ferry sync`: the most tree nodes one round of the hash compare may
/// carry (40 bytes each on the wire, so a round's frame stays under 40 MiB).
/// Every changed chunk costs one; at the average chunk this covers an
/// entirely new file of about 75 GiB per round.
pub const SYNC_MAX_NODES_PER_ROUND: usize = 1 << 20;

/// `ferry sync`: the smallest file sent as a delta when the receiver has
/// an older version. Below this, a delta's round trips cost more than the
/// bytes they save.
pub const SYNC_MIN_DELTA_BYTES: u64 = 64 * 1024;

/// `ferry sync`: the smallest new file (nothing at its path) sent as a
/// delta against chunks the receiver holds elsewhere (a rename, a copy).
pub const SYNC_MIN_NEW_DELTA_BYTES: u64 = 1024 * 1024;

// Checked when the crate compiles: the caps fit together.
/// Tickets for the extra connections of striped transfers held at once:
/// one per `get` or `put` asking for several streams and not yet done. As
/// many as `--max-connections` by default, since each transfer holds one
/// of those; past it a transfer runs on its one connection.
pub const MAX_TICKETS: usize = 1024;

/// How long a ticket admits extra connections after it was minted. The
/// client opens them as soon as it has planned, within a round trip or
/// two; 30 s covers planning a tree of many files on a slow disk, and a
/// ticket that leaked is useless soon after.
pub const TICKET_TTL: Duration = Duration::from_secs(30);

/// Extra connections one striped transfer may open. Eight streams fill a
/// 1 Gbit/s link at 100 ms round trip with 4 MiB windows; more would only
/// take connection slots from other clients.
pub const MAX_STREAMS: u32 = 8;

const _: () = {
    // Striping needs two streams; past 16 a transfer only takes slots.
    assert!(MAX_STREAMS >= 2 && MAX_STREAMS <= 16);
    assert!(UDP_MAX_PAYLOAD_BYTES < UDP_RECEIVE_BUFFER_BYTES);
    assert!(CHAT_GATEWAY_MAX_USERS * 4 <= CHAT.max_members);
    assert!(TIME_MAX_FORMAT_BYTES < UDP_RECEIVE_BUFFER_BYTES);
    assert!(UDP_EXEC_DATAGRAM_BYTES < UDP_RECEIVE_BUFFER_BYTES);
    assert!(
        UDP_EXEC_REPLY_BURST >= 2,
        "a command's stderr and stdout datagrams fit a fresh budget"
    );
    assert!(PIPE_READ_BYTES as u64 <= MAX_STDIN_FRAME_BYTES);
    assert!(
        DATAGRAM_RATE_BURST >= 4,
        "a client's iburst start must get through"
    );
    assert!(
        BLOCKING_SHUTDOWN_TIMEOUT.as_millis() + LOG_FLUSH_TIMEOUT.as_millis() < 1000,
        "shutdown ends within --drain-timeout plus a second"
    );
    assert!(4 * 6 * MAX_LOGGED_PEER_BYTES < MAX_LOG_LINE_BYTES);
    assert!(
        DATAGRAM_RATE_MAX_SOURCES * 64 < 1024 * 1024,
        "rate state under 1 MiB"
    );
    assert!(MAX_GLOB_MATCHES <= MAX_GLOB_NAMES_READ);
};

/// The QUIC door's own caps (`ferry serve --quic`), beside the ones it
/// shares with TCP: `max_connections`, `max_handshakes`, `hello_timeout`
/// (which also bounds the QUIC handshake), `idle_timeout` (a connection with
/// no stream open for that long is closed) and the per-source penalties.
/// Before a source's address is validated, quinn never sends it more than
/// three times what it received (RFC 9000 section 8's amplification limit);
/// quinn has no switch to turn that off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuicLimits {
    /// Bidirectional streams a connection may have open at once; each is a
    /// session of its own. The ferry client opens one per command; 16 lets
    /// a library user run several at once while bounding the sessions (and
    /// buffers) one connection can hold.
    pub max_streams_per_connection: u32,
    /// Bytes one stream may have in flight toward us: 16 MiB is more than
    /// a 1 Gbit/s link at 100 ms RTT holds (12.5 MB). quinn's default
    /// (1.25 MB) caps one stream near 100 Mbit/s at that RTT.
    pub stream_receive_window_bytes: u32,
    /// Bytes all of a connection's streams together may have in flight
    /// toward us: one stream at full speed. With `max_connections`, it
    /// bounds what peers can make the server buffer.
    pub connection_receive_window_bytes: u32,
    /// Bytes we keep in flight toward the peer, for the same link.
    pub send_window_bytes: u64,
    /// Time without a packet after which a connection is dead. The client
    /// sends a keep-alive every [`QuicLimits::keep_alive_interval`], so
    /// only a peer that is gone (or a path that broke for longer than
    /// this) reaches it.
    pub max_idle_timeout: Duration,
    /// How often the client sends a keep-alive while it waits (a long
    /// command with no output), well inside `max_idle_timeout` and the
    /// 30 s that NAT bindings for UDP commonly last.
    pub keep_alive_interval: Duration,
    /// How long a Retry token stays good: a round trip or two, so one
    /// seen on the path cannot be replayed later.
    pub retry_token_lifetime: Duration,
    /// QUIC handshakes in progress (accepted, not yet established) above
    /// which a source off loopback must first prove its address with a
    /// Retry, one more round trip. Below it a forged source costs at most
    /// one handshake's state until `hello_timeout`, and real clients skip
    /// the round trip; above it, a flood of Initial packets from many
    /// sources gets stateless Retries. 32 is far more than the handshakes
    /// a busy server finishes at once, and a small share of
    /// `max_handshakes` (at most half of it is used, whatever it is set to).
    pub retry_above_handshakes: usize,
    /// Bytes asked of the kernel for each UDP socket's send and receive
    /// buffers: a burst at 1 Gbit/s for a few milliseconds. The kernel caps
    /// it at `net.core.rmem_max`/`wmem_max`, which root can raise.
    pub udp_socket_buffer_bytes: usize,
}

/// The QUIC door's caps.
pub const QUIC: QuicLimits = QuicLimits {
    max_streams_per_connection: 16,
    stream_receive_window_bytes: 16 * 1024 * 1024,
    connection_receive_window_bytes: 16 * 1024 * 1024,
    send_window_bytes: 16 * 1024 * 1024,
    max_idle_timeout: Duration::from_secs(30),
    keep_alive_interval: Duration::from_secs(10),
    retry_token_lifetime: Duration::from_secs(15),
    retry_above_handshakes: 32,
    udp_socket_buffer_bytes: 8 * 1024 * 1024,
};

// The windows fill a 1 Gbit/s link at 100 ms RTT (12.5 MB in flight), and
// keep-alives come well inside the idle timeout.
const _: () = {
    let bandwidth_delay_bytes = 1_000_000_000 / 8 / 10;
    assert!(QUIC.stream_receive_window_bytes as u64 >= bandwidth_delay_bytes);
    assert!(QUIC.connection_receive_window_bytes >= QUIC.stream_receive_window_bytes);
    assert!(QUIC.send_window_bytes >= bandwidth_delay_bytes);
    assert!(QUIC.keep_alive_interval.as_secs() * 2 < QUIC.max_idle_timeout.as_secs());
};

/// The HTTP door's caps ([`crate::server::http`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Login sessions kept at once; past it the oldest is dropped. Each
    /// is a few hundred bytes; 1024 is more browsers than one person owns,
    /// and a login needs the token, so only its holder can fill the table.
    pub max_sessions: usize,
    /// How long a login lasts: a working day, after which the browser asks
    /// for the token again, as a lost phone's cookie should not work for
    /// ever.
    pub session_ttl: Duration,
    /// Largest form body (the login form), in bytes: a token and a CSRF
    /// token fit many times over.
    pub max_form_bytes: usize,
    /// Largest PATCH of a resumable upload, in bytes (tus chunks). 50 MiB
    /// passes the proxies that cap a request at 100 MB (dufs #531, #593)
    /// and costs a retry of at most that much.
    pub max_chunk_bytes: u64,
    /// Largest upload, announced as `Tus-Max-Size`. 1 TiB: the disk is the
    /// real limit, this only refuses nonsense lengths up front.
    pub max_upload_bytes: u64,
    /// Resumable uploads in progress at once; past it new ones are refused
    /// with 503. Each holds a partial file and, while a chunk arrives, a
    /// descriptor.
    pub max_uploads: usize,
    /// How long an upload may sit without a chunk before it is forgotten
    /// and its partial removed: a day leaves a phone a night to come back.
    pub upload_ttl: Duration,
    /// Entries a listing (HTML or JSON) shows; past it the listing says it
    /// was cut. 100,000 is about 20 MB of HTML, the most a browser renders
    /// usefully.
    pub max_listing_entries: usize,
    /// Directories deep a folder download (tar) goes: deeper ones are
    /// left out with a note in the log, so a hostile tree cannot exhaust
    /// descriptors (each level holds one).
    pub max_tar_depth: usize,
    /// Chunks of a folder download queued between the thread reading the
    /// files and the socket: with [`HTTP_STREAM_CHUNK_BYTES`] each, what a
    /// slow reader can make the server hold per download.
    pub tar_queue_chunks: usize,
    /// Share links kept in `links.toml`; past it `ferry link` asks for a
    /// revoke first.
    pub max_links: usize,
}

/// The HTTP door's caps.
pub const HTTP: HttpLimits = HttpLimits {
    max_sessions: 1024,
    session_ttl: Duration::from_secs(12 * 3600),
    max_form_bytes: 4096,
    max_chunk_bytes: 50 * 1024 * 1024,
    max_upload_bytes: 1 << 40,
    max_uploads: 256,
    upload_ttl: Duration::from_secs(24 * 3600),
    max_listing_entries: 100_000,
    max_tar_depth: 64,
    tar_queue_chunks: 4,
    max_links: 1024,
};

/// Bytes read from a file at a time for an HTTP download or a folder's
/// tar: large enough for throughput, small enough that a few queued per
/// download stay cheap.
pub const HTTP_STREAM_CHUNK_BYTES: usize = 256 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quic_receive_windows_of_all_connections_stay_under_16_gib() {
        let total = Limits::default().max_connections as u64
            * u64::from(QUIC.connection_receive_window_bytes);
        assert!(total <= 16 * 1024 * 1024 * 1024);
    }

    #[test]
    fn http_chunks_pass_a_100_mb_proxy_and_downloads_stay_small() {
        let http = HTTP;
        // A chunk and its headers pass a proxy that caps a request at 100 MB.
        assert!(http.max_chunk_bytes + 64 * 1024 < 100_000_000);
        assert_eq!(http.max_chunk_bytes, 50 * 1024 * 1024);
        assert!(http.max_chunk_bytes < http.max_upload_bytes);
        let per_download = http.tar_queue_chunks * HTTP_STREAM_CHUNK_BYTES;
        assert!(per_download <= 2 * 1024 * 1024, "{per_download}");
        assert!(http.max_sessions > 0 && http.max_uploads > 0 && http.max_links > 0);
        assert!(http.session_ttl <= Duration::from_secs(24 * 3600));
    }

    #[test]
    fn defaults_match_the_documented_contract() {
        let limits = Limits::default();
        assert_eq!(limits.max_header_bytes, 64 * 1024);
        assert!(
            limits.max_handshakes >= 200,
            "must admit a burst of 200 clients"
        );
        assert!(limits.drain_timeout <= Duration::from_secs(10));
        assert!(limits.validate().is_ok());
    }

    #[test]
    fn quic_asks_for_a_retry_well_before_its_handshakes_run_out() {
        let max_handshakes = Limits::default().max_handshakes;
        assert!((8..=64).contains(&QUIC.retry_above_handshakes));
        assert!(QUIC.retry_above_handshakes <= max_handshakes / 2);
    }

    #[test]
    fn every_transfer_in_the_connection_limit_can_hold_a_ticket() {
        assert!(MAX_TICKETS >= Limits::default().max_connections);
    }

    #[test]
    fn compat_output_held_by_all_commands_stays_bounded() {
        let held = MAX_COMPAT_OUTPUT_BYTES * Limits::default().max_commands;
        assert!(held <= 128 * 1024 * 1024, "{held} bytes");
    }

    #[test]
    fn the_most_glob_matches_fit_in_a_listing() {
        // A match's JSON line is about 100 bytes; allow twice that.
        assert!(MAX_GLOB_MATCHES * 200 <= Limits::default().max_list_bytes);
    }

    #[test]
    fn the_udp_exec_budget_is_64_kib_per_10_seconds() {
        let bytes = UDP_EXEC_REPLY_BURST as usize * UDP_EXEC_DATAGRAM_BYTES;
        assert_eq!(bytes, 64 * 1024);
        let refill = UDP_EXEC_REPLY_INTERVAL * UDP_EXEC_REPLY_BURST;
        assert!(refill.abs_diff(Duration::from_secs(10)) < Duration::from_millis(1));
    }

    #[test]
    fn per_connection_buffers_stay_well_under_a_mebibyte() {
        assert!(Limits::default().max_buffer_bytes_per_connection() < 1024 * 1024);
    }

    #[test]
    fn a_hung_up_shell_is_killed_well_within_the_default_drain() {
        assert!(SHELL_HANGUP_GRACE * 2 <= Limits::default().drain_timeout);
    }

    #[test]
    fn penalties_follow_the_documented_contract() {
        let limits = Limits::default();
        assert_eq!(limits.penalty_min, Duration::from_secs(5));
        assert_eq!(limits.penalty_max, Duration::from_secs(600));
        assert_eq!(PENALTY_MAX_SOURCES, 65_536);
    }

    #[test]
    fn a_full_penalty_table_stays_under_sixteen_mebibytes() {
        use std::net::IpAddr;
        use std::time::Instant;
        // A hash map slot (key, value, control byte) and a B-tree key,
        // each counted twice for load factor and node slack.
        let map_slot = std::mem::size_of::<(IpAddr, (Instant, Duration))>() + 1;
        let tree_key = std::mem::size_of::<(Instant, IpAddr)>();
        let bytes = PENALTY_MAX_SOURCES * 2 * (map_slot + tree_key);
        assert!(bytes < 16 * 1024 * 1024, "{bytes} bytes");
    }

    #[test]
    fn nonsense_limits_are_refused() {
        let bad = [
            Limits {
                max_header_bytes: 10,
                ..Limits::default()
            },
            Limits {
                max_connections: 0,
                ..Limits::default()
            },
            Limits {
                max_unframed_connections: 0,
                ..Limits::default()
            },
            Limits {
                hello_timeout: Duration::ZERO,
                ..Limits::default()
            },
            Limits {
                idle_timeout: Duration::ZERO,
                ..Limits::default()
            },
            Limits {
                penalty_min: Duration::ZERO,
                ..Limits::default()
            },
            Limits {
                penalty_min: Duration::from_secs(10),
                penalty_max: Duration::from_secs(9),
                ..Limits::default()
            },
        ];
        for limits in bad {
            assert!(limits.validate().is_err(), "{limits:?}");
        }
    }
}
