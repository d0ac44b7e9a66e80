//! ringraft-protocol
