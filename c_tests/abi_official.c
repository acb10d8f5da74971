/* The official definitions pyarrow ships (arrow/c/abi.h, dlpack_abi.h). */
#include <arrow/c/abi.h>
#include <arrow/c/dlpack_abi.h>

#include "abi_layout.h"
const long long* official_abi(size_t* n);
DEFINE_ABI_TABLE(official_abi)
