//! `--streams`: big files of a get or put spread over extra connections,
//! which a ticket lets in, as ranges written into one partial file and
//! checked as they land. One file per concern: whole transfers through the
//! real client (`transfer.rs`), and hostile ranges and tickets sent frame
//! by frame (`hostile.rs`).

mod hostile;
mod resume;
mod transfer;
