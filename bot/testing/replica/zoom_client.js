// Zoom web client replica: the pre-join steps, waiting room, call, leave and end modals, driven by the
// replica server over its room connection (`ReplicaRoom`, shared with the Meet replica).
"use strict";

(() => {
  const cfg = JSON.parse(document.getElementById("zoom-config").textContent);
  const $ = (s) => document.querySelector(s);
  const show = (el, on = true) => { el.hidden = !on; };
  const screens = ["#preview", "#joining", "#signin", "#captcha", "#captcha-container", "#captcha-input",
    "#captcha-recaptcha", "#botwall", ".meeting-app", "#left"];
  const only = (sel) => screens.forEach((s) => show($(s), s === sel));

  const ENDED_BY_HOST = "This meeting has been ended by host";
  let room = null;      // the replica room connection, once Join is clicked
  let mic = null;       // the microphone stream, granted after the permission prompt
  let audioOn = false;
  let muted = false;    // the in-call microphone, once audio is joined
  let previewAudio = cfg.previewAudioOn;
  let previewVideo = cfg.previewVideoOn;
  let out = false;      // left, removed or ended: ignore late server messages
  let entered = false;  // in the call (admission can arrive both as the join reply and as a message)

  // ---- pre-join ----------------------------------------------------------------------------------
  function cookieBanner() {
    if (!cfg.cookieBanner) return Promise.resolve();
    const banner = $("#onetrust-banner-sdk");
    show(banner);
    return new Promise((done) => {
      for (const id of ["#onetrust-accept-btn-handler", "#onetrust-reject-all-handler"]) {
        $(id).addEventListener("click", () => { show(banner, false); done(); });
      }
    });
  }

  // Zoom's own prompt, shown before the browser is asked: camera and microphone, then microphone only.
  function permissionPrompt(text) {
    const dialog = $("#permission");
    dialog.querySelector(".permission-text").textContent = text;
    show(dialog);
    return new Promise((done) => {
      dialog.querySelector(".permission-allow").onclick = () => { show(dialog, false); done(true); };
      dialog.querySelector(".permission-skip").onclick = () => { show(dialog, false); done(false); };
    });
  }

  async function permissions() {
    if (cfg.permissionPrompts <= 0) return true;
    let allowed = await permissionPrompt("Allow Zoom to use your microphone and camera");
    if (allowed && cfg.permissionPrompts > 1) allowed = await permissionPrompt("Allow Zoom to use your microphone");
    return allowed;
  }

  // The preview's microphone and camera toggles; their state carries over into the call.
  function previewToggles() {
    const audio = $("#preview-audio-control-button");
    const video = $("#preview-video-control-button");
    const render = () => {
      const a = previewAudio ? "Mute" : "Unmute";
      const v = previewVideo ? "Stop Video" : "Start Video";
      audio.setAttribute("aria-label", a);
      audio.textContent = a;
      video.setAttribute("aria-label", v);
      video.textContent = v;
    };
    audio.addEventListener("click", () => { previewAudio = !previewAudio; render(); });
    video.addEventListener("click", () => { previewVideo = !previewVideo; render(); });
    render();
  }

  // Terms over a mask as soon as the preview loads: nothing below takes a click until they are accepted.
  function termsModal() {
    if (!cfg.termsModal) return;
    const modal = $("#terms-modal");
    const agree = $("#disclaimer_agree");
    show($("#terms-mask"));
    show(modal);
    if (cfg.termsModal === "checkbox") {
      const box = $("#wc_agree1");
      $("#terms-modal-check").prepend(box);
      show($("#terms-modal-check"));
      agree.disabled = true;
      box.addEventListener("change", () => { agree.disabled = !box.checked; });
    }
    agree.addEventListener("click", () => { show(modal, false); show($("#terms-mask"), false); });
  }

  function preview() {
    only("#preview");
    previewToggles();
    termsModal();
    const name = $("#input-for-name");
    const pwd = $("#input-for-pwd");
    const join = $(".preview-join-button");
    const terms = $("#wc_agree1");
    show($("#pwd-row"), cfg.askPasscode);
    show($("#terms-row"), cfg.terms);
    terms.addEventListener("change", () => update());
    // Only real typing enables Join: a value set by script fires no trusted input event.
    let typed = false;
    const askPwd = () => !$("#pwd-row").hidden;
    const update = () => {
      const ok = typed && name.value.trim() !== "" && (!askPwd() || pwd.value !== "") && (!cfg.terms || terms.checked);
      join.disabled = !ok;
      join.classList.toggle("disabled", !ok);
    };
    name.addEventListener("input", (e) => { if (e.isTrusted) typed = true; update(); });
    pwd.addEventListener("input", update);
    join.addEventListener("click", async () => {
      if (join.disabled) return;
      $("#preview-error").textContent = "";
      only("#joining");
      await answer(await ReplicaRoom.join(cfg.room, { name: name.value, passcode: askPwd() ? pwd.value : cfg.urlPwd, platform: "zoom" }, onServer));
    });
  }

  // What the server said to the join request.
  async function answer(reply) {
    room = reply.room || null;
    switch (reply.result) {
      case "passcode_wrong":
        // Zoom then asks for the passcode in the page, with the error under it.
        only("#preview");
        show($("#pwd-row"));
        $("#preview-error").textContent = "Passcode wrong";
        return;
      case "sign_in": only("#signin"); return;
      case "captcha": captcha(); return;
      case "bot_wall":
        if (cfg.botWallStyle === "shadow") shadowWall(); else only("#botwall");
        return;
      case "waiting": waitingRoom(); return;
      case "admitted": await inCall(); return;
      case "not_found": only("#preview"); $("#preview-error").textContent = "This meeting ID is not valid."; return;
      case "host_absent":
        if (cfg.hostAbsent === "wait") { hostWait(); return; }
        // Zoom's own words for a meeting that has not started; only a reload asks again.
        finish();
        only("#preview"); $("#preview-error").textContent = "This meeting link is invalid (3,001)";
        return;
      default: only("#preview"); $("#preview-error").textContent = "Unable to join the meeting (" + reply.result + ")";
    }
  }

  function captcha() {
    const screen = { smart: "#captcha", container: "#captcha-container", input: "#captcha-input", recaptcha: "#captcha-recaptcha" }[cfg.captchaStyle];
    only(screen);
    const frame = $("#recaptcha");
    if (cfg.captchaStyle === "recaptcha") frame.src = frame.dataset.src;
  }

  // The anti-bot modal inside a closed shadow root: no selector and no innerText of the page reach it.
  function shadowWall() {
    const host = document.createElement("div");
    host.className = "shadow-host";
    const root = host.attachShadow({ mode: "closed" });
    root.innerHTML = `<style>.m { position: fixed; inset: 0; background: rgba(0,0,0,.8); color: #fff; display: flex;
      align-items: center; justify-content: center; flex-direction: column; font: 16px sans-serif; }</style>
      <div class="m" role="dialog" aria-modal="true"><h2>We detected you may be a bot</h2>
      <p>Automated bots aren't allowed to join this meeting.</p></div>`;
    document.body.appendChild(host);
  }

  function onServer(msg) {
    if (out) return;
    if (msg.type === "admitted") inCall();
    else if (msg.type === "host_joined") { waitingRoom(); show($("#wr-host-joined")); }
    else if (msg.type === "removed" || msg.type === "denied") endModal("You have been removed from this meeting by the host");
    else if (msg.type === "ended") endModal(ENDED_BY_HOST);
    else if (msg.type === "participants") { setParticipants(msg.count); renderGallery(msg.names || [], msg.pids || []); }
    // "lobby_timeout" is Meet's: Zoom sets no waiting-room timeout, the bot's own bound decides.
  }

  // ---- waiting room and call --------------------------------------------------------------------------
  // The meeting has not started: Zoom waits and moves on by itself once the host starts it.
  function hostWait() {
    only(".meeting-app");
    show($("#waiting-room"));
    show($("#in-call"), false);
    $(".wr-title").textContent = cfg.hostWaitText;
    $(".wr-topic").textContent = cfg.topic;
  }

  function waitingRoom() {
    if (entered) return;
    only(".meeting-app");
    $(".wr-title").textContent = "Please wait, the meeting host will let you in soon";
    show($("#waiting-room"));
    show($("#in-call"), false);
    $(".wr-topic").textContent = cfg.topic;
  }

  async function inCall() {
    // The admission can arrive both as the join reply and as a message: enter once.
    if (entered || out) return;
    entered = true;
    only(".meeting-app");
    show($("#waiting-room"), false);
    show($("#in-call"));
    document.title = "Zoom Meeting";
    $(".video-avatar__name").textContent = $("#input-for-name").value;
    footerAutoHide();
    if (cfg.audioDialog) {
      const dialog = $("#audio-dialog");
      show(dialog);
      dialog.querySelector("button").onclick = () => { show(dialog, false); joinAudio(); };
    } else {
      await joinAudio();
    }
  }

  async function joinAudio() {
    if (audioOn || out) return;
    audioOn = true;
    // The preview's microphone state carries over; some meetings start everyone muted.
    muted = !mic || !previewAudio || cfg.micStartsMuted;
    applyMute();
    // Remote cameras go into the gallery's tiles.
    await room.startAudio(mic, { onVideo: () => renderGallery() });
    renderAudio();
  }

  // Gallery view: a tile per other participant, with its camera's <video> when it sends one.
  let gallery = { names: [], pids: [] };
  function renderGallery(names = gallery.names, pids = gallery.pids) {
    gallery = { names, pids };
    let view = $(".gallery-video-container__main-view");
    if (!view) {
      view = document.createElement("div");
      view.className = "gallery-video-container__main-view";
      $(".single-main-container__video-frame").appendChild(view);
    }
    view.replaceChildren();
    const me = $("#input-for-name").value;
    let mine = false;
    names.forEach((n, i) => {
      if (!mine && n === me) { mine = true; return; }
      const tile = document.createElement("div");
      tile.className = "gallery-video-container__video-frame";
      tile.dataset.replicaPid = pids[i] || "";
      const video = room && room.videos && room.videos.get(pids[i]);
      if (video) {
        tile.appendChild(video);
        video.play().catch(() => {});
      }
      const label = document.createElement("span");
      label.className = "video-avatar__avatar-footer";
      label.textContent = n;
      tile.appendChild(label);
      view.appendChild(tile);
    });
  }

  function applyMute() {
    if (mic) mic.getAudioTracks().forEach((t) => { t.enabled = !muted; });
    if (room) room.send({ type: "media", audio: audioOn && !muted, video: previewVideo });
  }

  // The audio button in the words of each client version (cfg.audioLabels).
  const AUDIO_LABELS = {
    sentence: { join: "join audio", muted: "unmute my microphone", unmuted: "mute my microphone" },
    short: { join: "Join Audio", muted: "Unmute", unmuted: "Mute" },
    audio: { join: "audio", muted: "audio", unmuted: "audio" },
  };
  const AUDIO_ICONS = { join: "SvgJoinAudio", muted: "SvgAudioMuted", unmuted: "SvgAudioUnmuted" };
  const AUDIO_WORDS = { join: "Join Audio", muted: "Unmute", unmuted: "Mute" };

  function renderAudio() {
    const state = !audioOn ? "join" : muted ? "muted" : "unmuted";
    const btn = $(".join-audio-container__btn");
    btn.setAttribute("aria-label", AUDIO_LABELS[cfg.audioLabels][state]);
    btn.querySelector(".footer-button-base__img-layer").className = "footer-button-base__img-layer " + AUDIO_ICONS[state];
    btn.querySelector(".footer-button-base__button-label").textContent = AUDIO_WORDS[state];
  }
  renderAudio();

  $(".join-audio-container__btn").addEventListener("click", async () => {
    if (!audioOn) return joinAudio();
    if (!mic) return;
    muted = !muted;
    applyMute();
    renderAudio();
  });

  function setParticipants(n) {
    $(".footer-button__number-counter").textContent = String(n);
    $(".footer-button__participants-icon").setAttribute("aria-label", `open the participants list pane,[${n}] particpants`);
  }

  // The footer hides after a few seconds without pointer movement, as Zoom's does.
  function footerAutoHide() {
    const footer = $("#wc-footer");
    let timer = null;
    const wake = () => {
      footer.classList.remove("footer--hidden");
      clearTimeout(timer);
      timer = setTimeout(() => footer.classList.add("footer--hidden"), cfg.footerHideMs);
    };
    document.addEventListener("mousemove", wake);
    document.addEventListener("click", wake);
    wake();
  }

  const leaveOptions = $(".leave-meeting-options");
  if (cfg.leaveConfirm === "unknown") {
    // A client whose confirm button the bot has no words for.
    $(".leave-meeting-options__btn--danger").remove();
    show($(".leave-unknown"));
  }
  const leaveNow = () => {
    finish();
    only("#left");
    document.title = "Zoom";
  };
  $(".footer__leave-btn").addEventListener("click", () => show(leaveOptions));
  $(".leave-meeting-options__btn--cancel").addEventListener("click", () => show(leaveOptions, false));
  for (const b of leaveOptions.querySelectorAll(".leave-meeting-options__btn--danger, .leave-unknown")) {
    b.addEventListener("click", leaveNow);
  }
  // Enter on the open leave dialog cancels it (whatever has the focus).
  document.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !leaveOptions.hidden) {
      e.preventDefault();
      e.stopPropagation();
      show(leaveOptions, false);
    }
  }, true);

  function endModal(text) {
    if (text === ENDED_BY_HOST && cfg.endStyle === "navigate") {
      finish();
      location.href = cfg.endUrl;
      return;
    }
    if (text === ENDED_BY_HOST && cfg.endStyle === "end_now") {
      finish();
      const box = $("#end-now");
      show(box);
      box.querySelector(".end-now-ok").onclick = () => { show(box, false); only("#left"); };
      return;
    }
    finish();
    const modal = $("#end-modal");
    modal.querySelector(".zm-modal-body-title").textContent = text;
    show(modal);
    modal.querySelector(".end-ok").onclick = () => { show(modal, false); only("#left"); $("#left h2").textContent = text; };
  }

  function finish() {
    out = true;
    if (room) room.close();
  }

  // ---- start ----------------------------------------------------------------------------------------
  (async () => {
    await cookieBanner();
    if (await permissions()) {
      mic = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: cfg.audioProcessing, noiseSuppression: cfg.audioProcessing, autoGainControl: cfg.audioProcessing },
      });
    }
    preview();
  })();
})();
