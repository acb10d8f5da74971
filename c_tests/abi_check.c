/* ABI check: our header's structs and constants against the official
 * definitions (pyarrow's arrow/c/abi.h and dlpack_abi.h), entry by entry. */
#include <stdio.h>

#include "abi_layout.h"

const long long* official_abi(size_t* n);
const long long* our_abi(size_t* n);
int ours_first_uses_both(void);
int official_first_uses_both(void);

static const char* const NAMES[] = {ABI_ENTRIES(ABI_NAME)};

int main(void) {
  size_t n_official, n_ours;
  const long long* official = official_abi(&n_official);
  const long long* ours = our_abi(&n_ours);
  int failures = 0;
  if (n_official != n_ours) return 1;
  for (size_t i = 0; i < n_ours; i++) {
    if (official[i] != ours[i]) {
      fprintf(stderr, "%s: official %lld, ours %lld\n", NAMES[i], official[i], ours[i]);
      failures++;
    }
  }
  if (!ours_first_uses_both() || !official_first_uses_both()) {
    fprintf(stderr, "headers included together misbehave\n");
    failures++;
  }
  if (failures) return 1;
  printf("abi_check: %zu sizes, offsets and values match\n", n_ours);
  return 0;
}
