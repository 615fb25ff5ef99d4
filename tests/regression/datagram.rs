//! The datagram services and the UDP chat gateway: no loops, no
//! amplification, no impostors, nothing raw into a terminal.
