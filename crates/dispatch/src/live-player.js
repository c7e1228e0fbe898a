"use strict";
// Raw live video of a camera in a <video>, from the node's WebSocket (/cameras/<id>/live.ws)
// through Media Source Extensions: the node sends the stream's description (JSON), the init
// segment, one fMP4 fragment per frame, and with each key frame {time, wall} (the stream's
// time and when the node received it). The player stays at the live edge (it jumps ahead
// when more than 0.6 s is buffered), keeps at most 20 s in the buffer (a wall runs for
// days), shows how late the picture is (video.dataset.delayMs: now minus when the node
// received the frame on screen), and says in words what went wrong.
// onState(text, ok) is told every change; returns {close()}.
function livePlayer(video, path, onState) {
  const url = new URL(path, location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  // Credentials typed into the address bar stay there: the browser sends its cached ones.
  url.username = url.password = "";
  let ws = null, ms = null, sb = null, queue = [], mapping = null, closed = false, opened = false, lastTrim = 0;
  const say = (t, ok) => { video.dataset.state = t; if (onState) onState(t, ok); };
  video.muted = true;
  video.playsInline = true;
  video.autoplay = true;

  function pump() {
    if (!sb || sb.updating || closed) return;
    const b = video.buffered;
    if (b.length) {
      const end = b.end(b.length - 1);
      // Behind the live edge (the start from the last key frame, a hidden tab, a slow
      // machine): jump to it, keeping a few frames in hand against the network's jitter.
      if (end - video.currentTime > 0.6) video.currentTime = Math.max(b.start(b.length - 1), end - 0.15);
      // Keep the buffer short: a tile that plays for days must not grow.
      if (video.currentTime - b.start(0) > 20 && Date.now() - lastTrim > 5000) {
        lastTrim = Date.now();
        try { sb.remove(0, video.currentTime - 10); return; } catch (e) { /* retried on the next update */ }
      }
    }
    // More than ~4 s waiting to be appended: drop to the newest key frame the node marks.
    if (queue.length > 100) {
      const k = queue.map(q => q.key).lastIndexOf(true);
      if (k > 0) queue = queue.filter((q, i) => q.init || i >= k);
    }
    const next = queue.shift();
    if (!next) return;
    try {
      sb.appendBuffer(next.data);
    } catch (e) {
      say("the browser refused the video: " + e.message, false);
      close();
    }
  }

  function start(desc) {
    const type = `video/mp4; codecs="${desc.codec}"`;
    if (!window.MediaSource || !MediaSource.isTypeSupported(type)) {
      say(`this browser cannot play ${desc.codec} live video`, false);
      close();
      return;
    }
    ms = new MediaSource();
    video.src = URL.createObjectURL(ms);
    ms.addEventListener("sourceopen", () => {
      URL.revokeObjectURL(video.src);
      sb = ms.addSourceBuffer(type);
      sb.mode = "segments";
      sb.addEventListener("updateend", pump);
      pump();
    }, { once: true });
    video.play().catch(() => {});
  }

  let nextIsKey = false, nextIsInit = false;
  function connect() {
    ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    ws.onopen = () => { opened = true; say("connecting to the camera's stream…", true); };
    ws.onmessage = (ev) => {
      if (typeof ev.data === "string") {
        const m = JSON.parse(ev.data);
        if (m.codec) { start(m); say(`live ${m.width}×${m.height}`, true); }
        else if (m.init) nextIsInit = true;
        else if (m.time !== undefined) { mapping = m; nextIsKey = true; }
        return;
      }
      queue.push({ data: ev.data, key: nextIsKey, init: nextIsInit });
      nextIsKey = nextIsInit = false;
      pump();
    };
    ws.onclose = () => {
      if (closed) return;
      // A refusal (no right, privacy.live = "off") closes before opening: the caller falls
      // back to pictures. A stream that ended (the camera went) is retried.
      if (!opened) { say("raw live video is not available to you for this camera", false); close(); return; }
      say("the live stream ended; reconnecting…", false);
      cleanup();
      opened = false;
      setTimeout(() => { if (!closed) connect(); }, 2000);
    };
  }

  function cleanup() {
    queue = [];
    sb = null;
    if (ms && ms.readyState === "open") { try { ms.endOfStream(); } catch (e) { /* already ended */ } }
    ms = null;
  }

  video.addEventListener("timeupdate", () => {
    if (!mapping) return;
    const shown = mapping.wall + (video.currentTime - mapping.time) * 1000;
    video.dataset.delayMs = String(Math.round(Date.now() - shown));
  });

  function close() {
    closed = true;
    if (ws) { ws.onclose = null; ws.close(); }
    cleanup();
    video.removeAttribute("src");
    video.load();
  }

  connect();
  return { close };
}
