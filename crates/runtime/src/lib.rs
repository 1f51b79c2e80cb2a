//! The runtime's hot path: target URL normalization (SPEC 5.3) and the routing table snapshot
//! that the mapping checks (SPEC 6.1), and next the forward path, read without locks and
//! without touching the database.

pub mod cidr;
pub mod clock;
pub mod connect;
pub mod egress;
pub mod failure;
pub mod forward;
pub mod h1;
mod http2;
pub mod identity;
pub mod pool;
pub mod probe;
pub mod redirect;
pub mod table;
pub mod url;

pub use cidr::Cidr;
pub use table::{Entry, Route, RoutingTable, Table};
pub use url::{Scheme, UrlError, normalize};
