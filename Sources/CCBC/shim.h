#ifndef MPQ_CCBC_SHIM_H
#define MPQ_CCBC_SHIM_H
/* CBC's C interface (Debian coinor-libcbc-dev, pkg-config cbc). */
#include <coin/Cbc_C_Interface.h>
#endif
