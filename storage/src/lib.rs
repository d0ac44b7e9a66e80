//! ringraft-storage
