//! The PHP extension `rtet`: thin glue between PHP and `rtet-publisher`.
//! (Filled in by the extension issue.)
