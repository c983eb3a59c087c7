//! sd_notify
