// Node.js through the C ABI with koffi: builds an Arrow array in native
// memory, shares it as a DLPack tensor, reads the tensor, deletes it.
//
//   ARROW_DLPACK_LIBRARY=target/release/libarrow_dlpack.so node examples/node/index.js
'use strict';
const koffi = require('koffi');
const path = require('path');

const lib = koffi.load(process.env.ARROW_DLPACK_LIBRARY ||
  path.join(__dirname, '..', '..', 'target', 'release', 'libarrow_dlpack.so'));

const ArrowSchema = koffi.struct('ArrowSchema', {
  format: 'void *', name: 'void *', metadata: 'void *', flags: 'int64_t', n_children: 'int64_t',
  children: 'void *', dictionary: 'void *', release: 'void *', private_data: 'void *',
});
const ArrowArray = koffi.struct('ArrowArray', {
  length: 'int64_t', null_count: 'int64_t', offset: 'int64_t', n_buffers: 'int64_t', n_children: 'int64_t',
  buffers: 'void *', children: 'void *', dictionary: 'void *', release: 'void *', private_data: 'void *',
});
const DLTensor = koffi.struct('DLTensor', {
  data: 'void *', device_type: 'int32_t', device_id: 'int32_t', ndim: 'int32_t',
  code: 'uint8_t', bits: 'uint8_t', lanes: 'uint16_t',
  shape: 'void *', strides: 'void *', byte_offset: 'uint64_t',
});
const DLManagedTensorVersioned = koffi.struct('DLManagedTensorVersioned', {
  major: 'uint32_t', minor: 'uint32_t', manager_ctx: 'void *', deleter: 'void *', flags: 'uint64_t', dl_tensor: DLTensor,
});
const Release = koffi.proto('void Release(void *self)');

const exportVersioned = lib.func('void *arrow_dlpack_export_versioned(void *array, void *schema, void *error)');
const version = lib.func('const char *arrow_dlpack_version()');

// The producer side: values, buffers, a format string and release callbacks.
const n = 5;
const values = koffi.alloc('double', n);
koffi.encode(values, koffi.array('double', n), [0.5, 1.5, 2.5, 3.5, 4.5]);
const buffers = koffi.alloc('void *', 2);
koffi.encode(buffers, koffi.array('void *', 2), [null, values]);
const format = koffi.alloc('char', 2);
koffi.encode(format, koffi.array('char', 2), [103 /* 'g' */, 0]);

const RELEASE_OFFSET = koffi.offsetof(ArrowArray, 'release');
let released = 0;
const releaseArray = koffi.register((self) => {
  released++;
  koffi.encode(self, RELEASE_OFFSET, 'void *', null);
}, koffi.pointer(Release));
const releaseSchema = koffi.register((self) => {
  koffi.encode(self, koffi.offsetof(ArrowSchema, 'release'), 'void *', null);
}, koffi.pointer(Release));

const schema = koffi.alloc(ArrowSchema, 1);
koffi.encode(schema, ArrowSchema, {
  format, name: null, metadata: null, flags: 0, n_children: 0, children: null, dictionary: null,
  release: releaseSchema, private_data: null,
});
const array = koffi.alloc(ArrowArray, 1);
koffi.encode(array, ArrowArray, {
  length: 4, null_count: 0, offset: 1, n_buffers: 2, n_children: 0, buffers, children: null,
  dictionary: null, release: releaseArray, private_data: null,
});

// The consumer side: the tensor.
const tensor = exportVersioned(array, schema, null);
if (!tensor) throw new Error('export failed');
const managed = koffi.decode(tensor, DLManagedTensorVersioned);
const t = managed.dl_tensor;
const length = Number(koffi.decode(t.shape, 'int64_t'));
const data = koffi.decode(t.data, koffi.array('double', length));
const shared = koffi.address(t.data) === koffi.address(values) + 8n;
console.log(`node: arrow-dlpack ${version()}, DLPack ${managed.major}.${managed.minor}, ` +
  `${length} float64 [${Array.from(data).join(', ')}], shared: ${shared ? 'yes' : 'no'}`);
koffi.call(managed.deleter, Release, tensor);
console.log(`node: array released ${released} time(s)`);
koffi.unregister(releaseArray);
koffi.unregister(releaseSchema);
koffi.free(values);
process.exit(released === 1 && shared ? 0 : 1);
