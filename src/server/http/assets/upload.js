// ferry's upload page: drag and drop (files and folders) or pick, several
// at once, a progress bar per file, sent with tus 1.0 in chunks so a proxy
// with a request limit lets them through and a dropped connection resumes
// from the last chunk the server committed. The upload URL of each file is
// kept in localStorage, so after a reload picking the same file again
// resumes it. Each file is hashed with BLAKE3 (blake3.js, embedded too)
// before it is sent, and the server publishes it only if what arrived
// hashes the same; each chunk carries its SHA-1 (Upload-Checksum) where
// the browser offers crypto.subtle (HTTPS or localhost). No framework,
// nothing loaded from elsewhere.
"use strict";
(function () {
  const section = document.getElementById("upload");
  if (!section) return;
  const endpoint = section.dataset.endpoint;
  const csrfMeta = document.querySelector('meta[name="ferry-csrf"]');
  const csrf = csrfMeta ? csrfMeta.content : null;
  const list = document.getElementById("progress");
  const CHUNK = 16 * 1024 * 1024; // under the server's 50 MiB per PATCH
  const RETRIES = 5;

  function headers(extra) {
    const h = Object.assign({ "Tus-Resumable": "1.0.0" }, extra);
    if (csrf) h["X-Ferry-CSRF"] = csrf;
    return h;
  }

  function b64(text) {
    return btoa(String.fromCharCode(...new TextEncoder().encode(text)));
  }

  function bytesToB64(buffer) {
    let s = "";
    const bytes = new Uint8Array(buffer);
    for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
    return btoa(s);
  }

  function row(name) {
    const li = document.createElement("li");
    const label = document.createElement("span");
    label.textContent = name; // text, never HTML
    const bar = document.createElement("progress");
    bar.max = 1;
    bar.value = 0;
    const note = document.createElement("small");
    li.append(label, " ", note, bar);
    list.append(li);
    return { bar, note };
  }

  function storageKey(file, path) {
    return "ferry-upload:" + endpoint + ":" + path + ":" + file.size + ":" + file.lastModified;
  }

  function send(method, url, hdrs, body, onProgress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open(method, url);
      for (const [k, v] of Object.entries(hdrs)) xhr.setRequestHeader(k, v);
      if (onProgress) xhr.upload.onprogress = (e) => onProgress(e.loaded);
      xhr.onload = () => resolve(xhr);
      xhr.onerror = () => reject(new Error("network error"));
      xhr.send(body);
    });
  }

  // The file's BLAKE3, read in pieces so a large file never sits in memory.
  async function hashFile(file, bar, note) {
    const hasher = new FerryBlake3.Hasher();
    const STEP = 8 * 1024 * 1024;
    note.textContent = "checking ";
    for (let at = 0; at < file.size; at += STEP) {
      const piece = await file.slice(at, Math.min(at + STEP, file.size)).arrayBuffer();
      hasher.update(new Uint8Array(piece));
      bar.value = Math.min(at + STEP, file.size) / file.size;
    }
    note.textContent = "";
    bar.value = 0;
    return hasher.hex();
  }

  async function create(file, path, hash) {
    const meta = "filename " + b64(path) + ",blake3 " + b64(hash);
    const xhr = await send("POST", endpoint, headers({
      "Upload-Length": String(file.size),
      "Upload-Metadata": meta,
    }), null);
    if (xhr.status !== 201) throw new Error(xhr.responseText || "HTTP " + xhr.status);
    return xhr.getResponseHeader("Location");
  }

  async function offsetOf(url) {
    const xhr = await send("HEAD", url, headers({}), null);
    if (xhr.status !== 200) return null;
    return Number(xhr.getResponseHeader("Upload-Offset"));
  }

  async function checksum(blob) {
    if (!(window.crypto && crypto.subtle)) return null;
    const digest = await crypto.subtle.digest("SHA-1", await blob.arrayBuffer());
    return "sha1 " + bytesToB64(digest);
  }

  async function upload(file, path) {
    const { bar, note } = row(path);
    const key = storageKey(file, path);
    let url = localStorage.getItem(key);
    let offset = url ? await offsetOf(url).catch(() => null) : null;
    if (offset === null) {
      url = await create(file, path, await hashFile(file, bar, note));
      localStorage.setItem(key, url);
      offset = 0;
    } else if (offset > 0) {
      note.textContent = "resuming ";
    }
    let failures = 0;
    // An empty file is complete once created.
    while (offset < file.size) {
      const chunk = file.slice(offset, Math.min(offset + CHUNK, file.size));
      const extra = {
        "Content-Type": "application/offset+octet-stream",
        "Upload-Offset": String(offset),
      };
      const sum = await checksum(chunk);
      if (sum) extra["Upload-Checksum"] = sum;
      try {
        const start = offset;
        const xhr = await send("PATCH", url, headers(extra), chunk, (loaded) => {
          bar.value = file.size ? (start + loaded) / file.size : 1;
        });
        if (xhr.status === 204) {
          offset = Number(xhr.getResponseHeader("Upload-Offset"));
          failures = 0;
          continue;
        }
        if (xhr.status === 409 || xhr.status === 460) {
          // The server has another offset, or the chunk came corrupted:
          // ask where it stands and go on from there.
          offset = await offsetOf(url);
          if (offset === null) throw new Error(xhr.responseText);
        } else if (xhr.status >= 400 && xhr.status < 500) {
          throw new Error(xhr.responseText || "HTTP " + xhr.status);
        }
      } catch (err) {
        if (err.message !== "network error") throw err;
      }
      if (++failures > RETRIES) throw new Error("the connection keeps failing; reload to resume");
      await new Promise((r) => setTimeout(r, 1000 * failures));
      const now = await offsetOf(url).catch(() => null);
      if (now !== null) offset = now;
    }
    localStorage.removeItem(key);
    bar.value = 1;
    note.textContent = "done ";
  }

  async function run(items) {
    let failed = 0;
    const jobs = items.map(({ file, path }) =>
      upload(file, path).catch((err) => {
        failed++;
        const { note } = row(path);
        note.textContent = "failed: " + err.message + " ";
      })
    );
    await Promise.all(jobs);
    // The listing shows the new files; a failure stays on screen instead.
    if (!failed) location.reload();
  }

  function picked(input) {
    const items = Array.from(input.files).map((file) => ({
      file,
      path: file.webkitRelativePath || file.name,
    }));
    input.value = "";
    run(items);
  }

  // A dropped folder is walked entry by entry, keeping its relative paths.
  async function walk(entry, prefix, out) {
    if (entry.isFile) {
      const file = await new Promise((res, rej) => entry.file(res, rej));
      out.push({ file, path: prefix + entry.name });
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((res, rej) => reader.readEntries(res, rej));
        if (!batch.length) break;
        for (const child of batch) await walk(child, prefix + entry.name + "/", out);
      }
    }
  }

  document.getElementById("files").addEventListener("change", (e) => picked(e.target));
  document.getElementById("folder").addEventListener("change", (e) => picked(e.target));
  const drop = section.querySelector(".drop");
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", async (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const entries = Array.from(e.dataTransfer.items)
      .map((item) => item.webkitGetAsEntry && item.webkitGetAsEntry())
      .filter(Boolean);
    const items = [];
    for (const entry of entries) await walk(entry, "", items);
    run(items);
  });
})();
