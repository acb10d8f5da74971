/* Our definitions, from the generated header alone. */
#include "arrow_dlpack.h"

#include "abi_layout.h"
const long long* our_abi(size_t* n);
DEFINE_ABI_TABLE(our_abi)
