//! ringraft-loadgen
