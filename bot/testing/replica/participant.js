// A simulated human in a replica room (no pre-join UI). Its microphone is a Web Audio destination fed by
// tones, beeps or a WAV, and everything it hears is captured in the same AudioContext, so send and
// receive times are on one clock: the context's time in seconds ("page clock").
// Its camera, when the room turns it on (RoomConfig.cameras), is a moving test pattern drawn on a canvas
// (640x360 at 24 fps by default; `?video=WxH@FPS`). It never receives video: the simulated people do not
// look, so they cost what a sender costs.
// Driven from Python (bot/testing/participant.py) through `window.participant`.
"use strict";

(() => {
  const params = new URLSearchParams(location.search);
  const RATE = 48000;
  const CHUNK = 128 * 32; // frames per message from the capture worklet (about 85 ms)

  // The tap runs on the audio thread: it stamps each chunk with the context frame of its first sample.
  const TAP = `
    class Tap extends AudioWorkletProcessor {
      constructor() { super(); this.buf = new Float32Array(${CHUNK}); this.n = 0; this.start = 0; }
      process(inputs) {
        if (this.n === 0) this.start = currentFrame;
        const ch = inputs[0] && inputs[0][0];
        if (ch) this.buf.set(ch, this.n);
        this.n += 128;
        if (this.n >= this.buf.length) {
          this.port.postMessage({ frame: this.start, data: this.buf }, [this.buf.buffer]);
          this.buf = new Float32Array(${CHUNK});
          this.n = 0;
        }
        return true;
      }
    }
    registerProcessor("tap", Tap);`;

  const ctx = new AudioContext({ sampleRate: RATE });
  const mic = ctx.createMediaStreamDestination();
  mic.channelCount = 1;
  const send = ctx.createGain();
  send.connect(mic);
  const chunks = []; // {frame, data}
  let captureFrom = null;
  const mixer = ctx.createGain();

  function b64(floats) {
    const bytes = new Uint8Array(floats.buffer, floats.byteOffset, floats.byteLength);
    let s = "";
    for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    return btoa(s);
  }

  async function setup() {
    await ctx.audioWorklet.addModule(URL.createObjectURL(new Blob([TAP], { type: "text/javascript" })));
    const tap = new AudioWorkletNode(ctx, "tap", {
      numberOfInputs: 1, numberOfOutputs: 1, channelCount: 1, channelCountMode: "explicit", channelInterpretation: "speakers",
    });
    tap.port.onmessage = (e) => {
      if (captureFrom === null) captureFrom = e.data.frame;
      chunks.push(e.data);
    };
    // The graph renders only what reaches the destination: pull the tap through a silent gain.
    const sink = ctx.createGain();
    sink.gain.value = 0;
    mixer.connect(tap).connect(sink).connect(ctx.destination);
    await ctx.resume();
  }

  function onTrack(track) {
    ctx.createMediaStreamSource(new MediaStream([track])).connect(mixer);
  }

  // ---- camera: a moving test pattern -----------------------------------------------------------------
  const [, VW, VH, FPS] = (params.get("video") || "640x360@24").match(/^(\d+)x(\d+)@(\d+)$/).map(Number);
  const camera = { stream: null, timer: null, frames: 0 };
  let backdrop = null; // a textured picture, drawn once, that pans (like a hand-held camera): every block
                       // of every frame changes, as in a real camera's picture
  function drawFrame(canvas) {
    const g = canvas.getContext("2d");
    const n = camera.frames++;
    const dx = (n * 3) % VW, dy = Math.round(20 * Math.sin(n / 15));
    g.drawImage(backdrop, -dx, dy - 20);
    g.drawImage(backdrop, VW - dx, dy - 20);
    g.fillStyle = `hsl(${(n * 5) % 360} 80% 50%)`;
    g.beginPath();
    g.arc(VW / 2 + (VW / 3) * Math.cos(n / 20), VH / 2 + (VH / 3) * Math.sin(n / 13), VH / 6, 0, 2 * Math.PI);
    g.fill();
    g.fillStyle = "#fff";
    g.font = `${Math.round(VH / 10)}px monospace`;
    g.fillText(`${params.get("name") || ""} ${n}`, 12, VH - 12);
  }
  function makeBackdrop() {
    const b = document.createElement("canvas");
    b.width = VW;
    b.height = VH + 40;
    const g = b.getContext("2d");
    let seed = 7;
    const rnd = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
    for (let y = 0; y < b.height; y += 8) {
      for (let x = 0; x < b.width; x += 8) {
        g.fillStyle = `hsl(${Math.floor(rnd() * 360)} ${30 + Math.floor(rnd() * 40)}% ${25 + Math.floor(rnd() * 50)}%)`;
        g.fillRect(x, y, 8, 8);
      }
    }
    return b;
  }
  function cameraOn(on) {
    if (!on) {
      clearInterval(camera.timer);
      if (camera.stream) camera.stream.getTracks().forEach((t) => t.stop());
      camera.stream = null;
      return null;
    }
    if (camera.stream) return camera.stream;
    backdrop = backdrop || makeBackdrop();
    const canvas = document.createElement("canvas");
    canvas.width = VW;
    canvas.height = VH;
    drawFrame(canvas);
    camera.stream = canvas.captureStream(FPS);
    // Under CPU load WebRTC would shrink the picture; a benchmark wants the bot to receive what was sent:
    // keep the resolution (a loaded sender drops frames instead, which the receiver's figures show).
    camera.stream.getVideoTracks()[0].contentHint = "detail";
    // A timer, not requestAnimationFrame: the pages of one shared browser are not all "visible".
    camera.timer = setInterval(() => drawFrame(canvas), 1000 / FPS);
    return camera.stream;
  }

  const state = { result: null, events: [], room: null };

  const api = {
    state,
    clock() {
      return { ctx: ctx.currentTime, wall: performance.timeOrigin + performance.now(), rate: ctx.sampleRate };
    },
    playTone(hz, seconds, gain = 0.5) {
      const t0 = ctx.currentTime + 0.05;
      const osc = new OscillatorNode(ctx, { frequency: hz });
      const g = new GainNode(ctx, { gain });
      osc.connect(g).connect(send);
      osc.start(t0);
      osc.stop(t0 + seconds);
      return t0;
    },
    playBeeps(count, interval, hz, ms, gain = 0.5) {
      const t0 = ctx.currentTime + 0.1;
      const times = [];
      for (let i = 0; i < count; i++) {
        const t = t0 + i * interval;
        const osc = new OscillatorNode(ctx, { frequency: hz });
        const g = new GainNode(ctx, { gain });
        osc.connect(g).connect(send);
        osc.start(t);
        osc.stop(t + ms / 1000);
        times.push(t);
      }
      return times;
    },
    async playWav(base64) {
      const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
      const buffer = await ctx.decodeAudioData(bytes.buffer);
      const src = new AudioBufferSourceNode(ctx, { buffer });
      src.connect(send);
      const t0 = ctx.currentTime + 0.05;
      src.start(t0);
      return { start: t0, duration: buffer.duration };
    },
    // Everything heard from page-clock time `since` on: {start (page clock), data (base64 float32)}.
    heardSince(since) {
      if (captureFrom === null) return { start: 0, data: "" };
      const from = Math.max(captureFrom, Math.round(since * RATE));
      const parts = chunks.filter((c) => c.frame + c.data.length > from);
      if (parts.length === 0) return { start: from / RATE, data: "" };
      const first = parts[0].frame;
      const total = parts[parts.length - 1].frame + parts[parts.length - 1].data.length - first;
      const out = new Float32Array(total);
      for (const c of parts) out.set(c.data, c.frame - first);
      const skip = Math.max(0, from - first);
      return { start: (first + skip) / RATE, data: b64(out.subarray(skip)) };
    },
    captureStart() {
      return captureFrom === null ? null : captureFrom / RATE;
    },
    // Drops what was heard before page-clock time `before` (a long call keeps its memory flat).
    forget(before) {
      const frame = Math.round(before * RATE);
      while (chunks.length && chunks[0].frame + chunks[0].data.length <= frame) chunks.shift();
      return chunks.length;
    },
    leave() {
      if (state.room) state.room.close();
      cameraOn(false);
    },
    // Per peer: connection state, transceiver directions, bytes and audio level in and out, and the clock.
    async mediaReport() {
      const out = { clock: api.clock(), captured: chunks.length, peers: {} };
      if (!state.room) return out;
      for (const [pid, peer] of state.room.peers) {
        const entry = {
          state: peer.pc.connectionState,
          directions: peer.pc.getTransceivers().map((t) => `${t.mid}:${t.currentDirection}`),
          element: peer.audio ? { paused: peer.audio.paused, readyState: peer.audio.readyState } : null,
        };
        (await peer.pc.getStats()).forEach((s) => {
          if (s.type === "inbound-rtp") entry[`in_${s.kind}`] = { bytes: s.bytesReceived, level: s.audioLevel };
          if (s.type === "outbound-rtp") entry[`out_${s.kind}`] = { bytes: s.bytesSent };
        });
        out.peers[pid] = entry;
      }
      return out;
    },
    // {on, frames drawn, width, height, fps}
    camera() {
      return { on: !!camera.stream, frames: camera.frames, width: VW, height: VH, fps: FPS };
    },
  };
  window.participant = api;

  api.setup = setup();
  // Joins once Python says so: its PulseAudio sink must be reclocked first, or WebRTC audio queues up
  // in front of the stalled AudioContext and stays queued as added delay.
  api.join = async () => {
    await api.setup;
    const reply = await ReplicaRoom.join(
      params.get("room"),
      {
        name: params.get("name") || "Participant",
        passcode: params.get("passcode") || "",
        platform: params.get("platform") || undefined,
        host: params.get("host") === "1",
      },
      (msg) => state.events.push(msg),
    );
    state.result = reply.result;
    state.room = reply.room;
    // `?camera=0`: a person who never sends a camera (the room does not count it among its cameras).
    const source = params.get("camera") === "0" ? undefined : cameraOn;
    if (reply.room) await reply.room.startAudio(mic.stream, { onTrack, camera: source, receiveVideo: false });
    document.getElementById("status").textContent = reply.result;
    return reply.result;
  };
})();
