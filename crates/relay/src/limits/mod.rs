//! What a stranger, a sender or the relay itself may spend: connections and requests per
//! address ([`connection`]), token buckets by key ([`rate_limit`]), dispatches per repository
//! lane across the cluster ([`dispatch_rate`]), and tokens GitHub refused, refused at the door
//! for a while ([`refused_tokens`]).

pub mod connection;
pub mod dispatch_rate;
pub mod rate_limit;
pub mod refused_tokens;
