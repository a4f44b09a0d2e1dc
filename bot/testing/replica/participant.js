// A simulated human in a replica room (no pre-join UI). Its microphone is a Web Audio destination fed by
// tones, beeps or a WAV, and everything it hears is captured in the same AudioContext, so send and
// receive times are on one clock: the context's time in seconds ("page clock").
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
    if (reply.room) await reply.room.startAudio(mic.stream, { onTrack });
    document.getElementById("status").textContent = reply.result;
    return reply.result;
  };
})();
