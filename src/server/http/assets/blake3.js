// BLAKE3 (hash mode, 32-byte output) in plain JavaScript, for the upload
// page: the browser hashes a file before sending it, and the server
// publishes the upload only if the bytes that arrived hash to the same.
// Written from the BLAKE3 specification's reference design (chunk state,
// stack of chaining values); no dependency, nothing fetched. Checked
// against the Rust crate by tests/http/blake3_js.rs.
"use strict";
var FerryBlake3 = (function () {
  const IV = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
    0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
  ];
  const CHUNK_START = 1;
  const CHUNK_END = 2;
  const PARENT = 4;
  const ROOT = 8;
  const BLOCK_LEN = 64;
  const CHUNK_LEN = 1024;

  // The message word order of each of the 7 rounds.
  const SCHEDULE = (function () {
    const permutation = [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8];
    const rounds = [];
    let order = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
    for (let r = 0; r < 7; r++) {
      rounds.push(order);
      order = permutation.map((i) => order[i]);
    }
    return rounds;
  })();

  const v = new Uint32Array(16);

  function g(a, b, c, d, x, y) {
    let va = v[a], vb = v[b], vc = v[c], vd = v[d];
    va = (va + vb + x) | 0;
    vd ^= va; vd = (vd >>> 16) | (vd << 16);
    vc = (vc + vd) | 0;
    vb ^= vc; vb = (vb >>> 12) | (vb << 20);
    va = (va + vb + y) | 0;
    vd ^= va; vd = (vd >>> 8) | (vd << 24);
    vc = (vc + vd) | 0;
    vb ^= vc; vb = (vb >>> 7) | (vb << 25);
    v[a] = va; v[b] = vb; v[c] = vc; v[d] = vd;
  }

  // The compression function: 8 words of chaining value, 16 of message.
  // Returns the first 8 words of its output (all hash mode needs).
  function compress(cv, m, counter, blockLen, flags) {
    for (let i = 0; i < 8; i++) v[i] = cv[i];
    v[8] = IV[0]; v[9] = IV[1]; v[10] = IV[2]; v[11] = IV[3];
    v[12] = counter >>> 0;
    v[13] = Math.floor(counter / 0x100000000) >>> 0;
    v[14] = blockLen;
    v[15] = flags;
    for (let r = 0; r < 7; r++) {
      const s = SCHEDULE[r];
      g(0, 4, 8, 12, m[s[0]], m[s[1]]);
      g(1, 5, 9, 13, m[s[2]], m[s[3]]);
      g(2, 6, 10, 14, m[s[4]], m[s[5]]);
      g(3, 7, 11, 15, m[s[6]], m[s[7]]);
      g(0, 5, 10, 15, m[s[8]], m[s[9]]);
      g(1, 6, 11, 12, m[s[10]], m[s[11]]);
      g(2, 7, 8, 13, m[s[12]], m[s[13]]);
      g(3, 4, 9, 14, m[s[14]], m[s[15]]);
    }
    const out = new Uint32Array(8);
    for (let i = 0; i < 8; i++) out[i] = v[i] ^ v[i + 8];
    return out;
  }

  function words(bytes, offset, len, into) {
    if (len === BLOCK_LEN) {
      for (let i = 0, j = offset; i < 16; i++, j += 4) {
        into[i] = bytes[j] | (bytes[j + 1] << 8) | (bytes[j + 2] << 16) | (bytes[j + 3] << 24);
      }
      return into;
    }
    into.fill(0);
    for (let i = 0; i < len; i++) {
      into[i >> 2] |= bytes[offset + i] << (8 * (i & 3));
    }
    return into;
  }

  function Hasher() {
    this.cvStack = [];
    this.chunks = 0; // chunks finished
    this.cv = Uint32Array.from(IV);
    this.block = new Uint8Array(BLOCK_LEN);
    this.blockLen = 0;
    this.blocksDone = 0; // blocks compressed in this chunk
    this.m = new Uint32Array(16);
  }

  Hasher.prototype.chunkFlags = function () {
    return this.blocksDone === 0 ? CHUNK_START : 0;
  };

  Hasher.prototype.chunkLen = function () {
    return this.blocksDone * BLOCK_LEN + this.blockLen;
  };

  // Compresses a full block of this chunk that is known not to be its last.
  Hasher.prototype.compressBlock = function (bytes, offset) {
    words(bytes, offset, BLOCK_LEN, this.m);
    this.cv = compress(this.cv, this.m, this.chunks, BLOCK_LEN, this.chunkFlags());
    this.blocksDone++;
  };

  Hasher.prototype.pushChunk = function (cv) {
    this.chunks++;
    let total = this.chunks;
    while ((total & 1) === 0) {
      cv = compress(IV, concat(this.cvStack.pop(), cv), 0, BLOCK_LEN, PARENT);
      total = Math.floor(total / 2);
    }
    this.cvStack.push(cv);
  };

  Hasher.prototype.update = function (bytes) {
    let i = 0;
    while (i < bytes.length) {
      if (this.chunkLen() === CHUNK_LEN) {
        // The chunk is full and more input follows: finish it.
        words(this.block, 0, BLOCK_LEN, this.m);
        const flags = this.chunkFlags() | CHUNK_END;
        const cv = compress(this.cv, this.m, this.chunks, BLOCK_LEN, flags);
        this.pushChunk(cv);
        this.cv = Uint32Array.from(IV);
        this.blockLen = 0;
        this.blocksDone = 0;
      }
      if (this.blockLen === BLOCK_LEN) {
        this.compressBlock(this.block, 0);
        this.blockLen = 0;
      }
      // Whole blocks straight from the input while more follows them in
      // this chunk: the common case, without copying.
      while (
        this.blockLen === 0 &&
        bytes.length - i > BLOCK_LEN &&
        this.blocksDone < CHUNK_LEN / BLOCK_LEN - 1
      ) {
        this.compressBlock(bytes, i);
        i += BLOCK_LEN;
      }
      const take = Math.min(BLOCK_LEN - this.blockLen, bytes.length - i);
      this.block.set(bytes.subarray(i, i + take), this.blockLen);
      this.blockLen += take;
      i += take;
    }
    return this;
  };

  // The hash, as 64 hex digits.
  Hasher.prototype.hex = function () {
    words(this.block, 0, this.blockLen, this.m);
    let flags = this.chunkFlags() | CHUNK_END;
    let cv = this.cv;
    let m = this.m;
    let blockLen = this.blockLen;
    let counter = this.chunks;
    // Fold the stack from the top; the last compression carries ROOT.
    for (let i = this.cvStack.length - 1; i >= 0; i--) {
      const child = compress(cv, m, counter, blockLen, flags);
      cv = IV;
      m = concat(this.cvStack[i], child);
      blockLen = BLOCK_LEN;
      counter = 0;
      flags = PARENT;
    }
    const out = compress(cv, m, counter, blockLen, flags | ROOT);
    let hex = "";
    for (let i = 0; i < 8; i++) {
      for (let b = 0; b < 4; b++) {
        hex += ((out[i] >>> (8 * b)) & 0xff).toString(16).padStart(2, "0");
      }
    }
    return hex;
  };

  function concat(left, right) {
    const m = new Uint32Array(16);
    m.set(left, 0);
    m.set(right, 8);
    return m;
  }

  return {
    Hasher: Hasher,
    hex: function (bytes) {
      return new Hasher().update(bytes).hex();
    },
  };
})();
