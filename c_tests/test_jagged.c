/* Variable-length columns from C: list arrays built by hand (sliced, a
 * null row over a non-empty segment, int64 offsets) as jagged pairs and
 * padded tensors, both deletion orders of a pair, and the import back.
 * Run under valgrind and AddressSanitizer by ctest: every allocation freed,
 * every array released once. */
#include "fixture.h"

static const int32_t VALUES[7] = {1, 2, 3, 4, 5, 6, 7};

/* `list` (+l, or +L with int64 offsets) of `rows` rows over VALUES. */
static void make_list(Fixture* list, Fixture* child, const char* format, int64_t rows, const void* offsets) {
  fixture_init(child, "i", 7, VALUES);
  fixture_list(list, format, rows, child);
  list->array.n_buffers = 2;
  list->buffers[1] = offsets;
}

static DLManagedTensorVersioned* jagged_ok(Fixture* list, ArrowDlpackExportOptions* o, ArrowDlpackJagged* out) {
  ArrowDlpackError err;
  ArrowDlpackStatus s = arrow_dlpack_export_jagged(&list->array, &list->schema, o, out, &err);
  CHECK_STATUS(err, ARROW_DLPACK_OK);
  CHECK(s == ARROW_DLPACK_OK);
  CHECK(list->array.release == NULL); /* moved */
  return out->values;
}

static void shared_pair_released_once_in_either_order(void) {
  static const int32_t offsets[4] = {0, 2, 2, 5};
  for (int values_first = 0; values_first < 2; values_first++) {
    Fixture list, child;
    make_list(&list, &child, "+l", 3, offsets);
    ArrowDlpackJagged out;
    jagged_ok(&list, NULL, &out);
    CHECK(out.offsets->dl_tensor.data == (void*)offsets);
    CHECK(out.values->dl_tensor.data == (void*)VALUES);
    CHECK(out.values->dl_tensor.shape[0] == 5 && out.offsets->dl_tensor.shape[0] == 4);
    CHECK(out.values->flags == DLPACK_FLAG_BITMASK_READ_ONLY);
    DLManagedTensorVersioned* first = values_first ? out.values : out.offsets;
    DLManagedTensorVersioned* second = values_first ? out.offsets : out.values;
    first->deleter(first);
    CHECK(atomic_load(&list.releases) == 0);
    second->deleter(second);
    CHECK(atomic_load(&list.releases) == 1);
  }
}

static void a_slice_rebases_its_offsets_and_shares_its_values(void) {
  static const int32_t offsets[5] = {0, 2, 3, 6, 7};
  Fixture list, child;
  make_list(&list, &child, "+l", 4, offsets);
  list.array.offset = 1;
  list.array.length = 2;
  ArrowDlpackExportOptions o = {0};
  ArrowDlpackJagged out;
  ArrowDlpackError err;
  CHECK(arrow_dlpack_export_jagged(&list.array, &list.schema, &o, &out, &err) == ARROW_DLPACK_NEEDS_COPY);
  CHECK(list.array.release != NULL && atomic_load(&list.releases) == 0); /* untouched */
  o.copy = ARROW_DLPACK_COPY_IF_NEEDED;
  jagged_ok(&list, &o, &out);
  const int32_t* rebased = (const int32_t*)out.offsets->dl_tensor.data;
  CHECK(rebased[0] == 0 && rebased[1] == 1 && rebased[2] == 4);
  CHECK(out.offsets->flags == DLPACK_FLAG_BITMASK_IS_COPIED);
  CHECK(out.values->dl_tensor.data == (void*)(VALUES + 2));
  out.offsets->deleter(out.offsets);
  out.values->deleter(out.values);
  CHECK(atomic_load(&list.releases) == 1);
}

static void a_null_row_over_elements_is_dropped_with_a_row_mask(void) {
  static const int32_t offsets[4] = {0, 2, 4, 5};
  static const uint8_t validity[1] = {0x5}; /* rows 0 and 2 valid */
  Fixture list, child;
  make_list(&list, &child, "+l", 3, offsets);
  list.buffers[0] = validity;
  list.array.null_count = 1;
  ArrowDlpackExportOptions o = {0};
  o.copy = ARROW_DLPACK_COPY_IF_NEEDED;
  ArrowDlpackJagged out;
  ArrowDlpackError err;
  CHECK(arrow_dlpack_export_jagged(&list.array, &list.schema, &o, &out, &err) == ARROW_DLPACK_HAS_NULLS);
  o.fill_nulls = 1;
  DLManagedTensorVersioned* mask = NULL;
  o.validity = &mask;
  jagged_ok(&list, &o, &out);
  const int32_t* v = (const int32_t*)out.values->dl_tensor.data;
  const int32_t* off = (const int32_t*)out.offsets->dl_tensor.data;
  CHECK(out.values->dl_tensor.shape[0] == 3 && v[0] == 1 && v[1] == 2 && v[2] == 5);
  CHECK(off[0] == 0 && off[1] == 2 && off[2] == 2 && off[3] == 3);
  const uint8_t* m = (const uint8_t*)mask->dl_tensor.data;
  CHECK(mask != NULL && m[0] == 1 && m[1] == 0 && m[2] == 1);
  CHECK(atomic_load(&list.releases) == 1); /* copied: released at once */
  out.values->deleter(out.values);
  out.offsets->deleter(out.offsets);
  mask->deleter(mask);
}

static void large_lists_pad_left_with_their_attention_mask(void) {
  static const int64_t offsets[3] = {0, 3, 4};
  Fixture list, child;
  make_list(&list, &child, "+L", 2, offsets);
  ArrowDlpackExportOptions o = {0};
  DLManagedTensorVersioned* mask = NULL;
  o.validity = &mask;
  ArrowDlpackPadding p = {0};
  p.side = 1;
  p.length = 2;
  p.value = -1;
  ArrowDlpackError err;
  DLManagedTensorVersioned* t = arrow_dlpack_export_padded(&list.array, &list.schema, &o, &p, &err);
  CHECK_STATUS(err, ARROW_DLPACK_OK);
  CHECK(t != NULL && t->dl_tensor.shape[0] == 2 && t->dl_tensor.shape[1] == 2);
  const int32_t* v = (const int32_t*)t->dl_tensor.data;
  CHECK(v[0] == 2 && v[1] == 3 && v[2] == -1 && v[3] == 4); /* each row's end kept */
  const uint8_t* m = (const uint8_t*)mask->dl_tensor.data;
  CHECK(m[0] == 1 && m[1] == 1 && m[2] == 0 && m[3] == 1);
  CHECK(t->flags == DLPACK_FLAG_BITMASK_IS_COPIED);
  CHECK(atomic_load(&list.releases) == 1);
  t->deleter(t);
  mask->deleter(mask);
}

static void the_pair_imports_as_a_list_owning_both(void) {
  static const int64_t offsets[3] = {0, 1, 4};
  Fixture list, child;
  make_list(&list, &child, "+L", 2, offsets);
  ArrowDlpackJagged out;
  jagged_ok(&list, NULL, &out);
  struct ArrowArray a;
  struct ArrowSchema s;
  ArrowDlpackError err;
  CHECK(arrow_dlpack_import_jagged(out.values, out.offsets, NULL, &a, &s, &err) == ARROW_DLPACK_OK);
  CHECK_STATUS(err, ARROW_DLPACK_OK);
  CHECK(strcmp(s.format, "+L") == 0 && a.length == 2 && a.n_children == 1);
  CHECK(a.buffers[1] == (const void*)offsets && a.children[0]->buffers[1] == (const void*)VALUES);
  s.release(&s);
  CHECK(atomic_load(&list.releases) == 0);
  a.release(&a);
  CHECK(atomic_load(&list.releases) == 1); /* both tensors deleted once */
}

static void bad_offsets_leave_both_tensors_with_the_caller(void) {
  static const int32_t offsets[3] = {0, 2, 3};
  Fixture list, child;
  make_list(&list, &child, "+l", 2, offsets);
  ArrowDlpackJagged out;
  jagged_ok(&list, NULL, &out);
  /* The values cut to 2 rows: the offsets end beyond them. */
  out.values->dl_tensor.shape[0] = 2;
  struct ArrowArray a;
  struct ArrowSchema s;
  ArrowDlpackError err;
  CHECK(arrow_dlpack_import_jagged(out.values, out.offsets, NULL, &a, &s, &err) == ARROW_DLPACK_INVALID_ARGUMENT);
  CHECK(strstr(err.message, "beyond the values") != NULL);
  CHECK(atomic_load(&list.releases) == 0);
  out.values->deleter(out.values);
  out.offsets->deleter(out.offsets);
  CHECK(atomic_load(&list.releases) == 1);
}

int main(void) {
  shared_pair_released_once_in_either_order();
  a_slice_rebases_its_offsets_and_shares_its_values();
  a_null_row_over_elements_is_dropped_with_a_row_mask();
  large_lists_pad_left_with_their_attention_mask();
  the_pair_imports_as_a_list_owning_both();
  bad_offsets_leave_both_tensors_with_the_caller();
  return finish("test_jagged");
}
