//! Transfers: every file accounted for, partials nobody else can plant,
//! modes the receiver can trust, no debris, and trees that cost linear time.
