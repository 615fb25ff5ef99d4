//! The client side of `echo`.

use bytes::{Bytes, BytesMut};

use super::{expect_ok, Client};
use crate::error::Error;
use crate::services::echo::EchoRequest;
use crate::services::Request;

impl Client {
    /// Sends `data` to the echo service and returns the reply body. The body
    /// is sent while the reply is read, so any size works; a reply that is
    /// not the same length as the request is a protocol error.
    pub async fn echo(&mut self, data: Bytes, upper: bool) -> Result<Bytes, Error> {
        let size = data.len() as u64;
        let header = Request::Echo(EchoRequest { upper })
            .to_header()
            .with_size(size);
        let (reader, writer) = self.connection().split();
        let send = async {
            writer.send_header(&header).await?;
            if !data.is_empty() {
                writer.send_body(data).await?;
            }
            writer.flush().await?;
            Ok::<(), Error>(())
        };
        let receive = async {
            let reply = expect_ok(reader.expect_header().await?)?;
            if reply.size() != size {
                return Err(Error::Protocol(format!(
                    "echo reply of {} bytes for a request of {size}",
                    reply.size()
                )));
            }
            let mut body = BytesMut::with_capacity(size as usize);
            while let Some(chunk) = reader.read_body_chunk().await? {
                body.extend_from_slice(&chunk);
            }
            Ok(body.freeze())
        };
        let ((), body) = tokio::try_join!(send, receive)?;
        self.answered();
        Ok(body)
    }
}
