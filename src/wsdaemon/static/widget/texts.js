// The widget's texts, English and Chinese; a site overrides some with data-
// attributes (data-title, data-greeting). They promise only what the product
// does: the daemon sends no email, the team sees an address left and may write.

function within(seconds, minutes, hours) {
  const m = Math.max(1, Math.ceil(seconds / 60));
  return m < 90 ? minutes(m) : hours(Math.ceil(m / 60));
}

const EN = {
  lang: "en",
  title: "Chat with us",
  greeting: "Hi there! Ask us anything: we are happy to help.",
  open: "Open chat",
  unread: (n) => (n === 1 ? "1 unread message" : `${n} unread messages`),
  close: "Close chat",
  dismiss: "Dismiss",
  panel: "Chat",
  thread: "Conversation",
  placeholder: "Write a message…",
  messageLabel: "Your message",
  send: "Send",
  hint: "Enter to send, Shift+Enter for a new line",
  online: "We are online",
  replyWithin: (s) => within(s, (m) => `We usually reply within ${m} minute${m === 1 ? "" : "s"}`,
                             (h) => `We usually reply within ${h} hour${h === 1 ? "" : "s"}`),
  replySoon: "We will reply as soon as we can",
  away: "We are away right now",
  connecting: "Connecting…",
  reconnecting: (s) => `Connection lost. Trying again in ${s} s`,
  retryNow: "Retry now",
  sending: "Sending…",
  sent: "Sent",
  read: "Read",
  failed: "Not sent.",
  retry: "Try again",
  typing: (name) => `${name || "Someone"} is typing…`,
  resolved: "This conversation was marked as resolved. Write to us again any time.",
  unavailable: "Chat is not available on this page right now. We will keep trying.",
  offlineIntro: "Nobody is available right now. Leave a message: the team will answer here. "
    + "Add your email address if you would like them to be able to write to you.",
  email: "Your email",
  emailInvalid: "Please enter a valid email address.",
  message: "Your message",
  leave: "Send message",
  skip: "Chat without email",
  contactThanks: (email) => `✓ Email saved: ${email}`,
  earlier: "Show earlier messages",
  you: "You",
  team: "Support",
  bot: "Assistant",
  today: "Today",
};

const ZH = {
  lang: "zh",
  title: "在线咨询",
  greeting: "您好！有什么可以帮您？",
  open: "打开聊天",
  unread: (n) => `${n} 条未读消息`,
  close: "关闭聊天",
  dismiss: "忽略",
  panel: "聊天",
  thread: "对话",
  placeholder: "输入消息…",
  messageLabel: "您的消息",
  send: "发送",
  hint: "Enter 发送，Shift+Enter 换行",
  online: "客服在线",
  replyWithin: (s) => within(s, (m) => `通常在 ${m} 分钟内回复`, (h) => `通常在 ${h} 小时内回复`),
  replySoon: "我们会尽快回复您",
  away: "客服暂时不在",
  connecting: "正在连接…",
  reconnecting: (s) => `连接已断开，${s} 秒后重试`,
  retryNow: "立即重试",
  sending: "发送中…",
  sent: "已发送",
  read: "已读",
  failed: "未发送。",
  retry: "重试",
  typing: (name) => `${name || "对方"}正在输入…`,
  resolved: "此对话已标记为已解决。如有需要，欢迎随时再联系我们。",
  unavailable: "此页面暂时无法使用在线咨询，我们会继续尝试连接。",
  offlineIntro: "目前没有客服在线。请留言，客服会在这里回复您。如希望客服也能通过邮件联系您，请留下邮箱。",
  email: "您的邮箱",
  emailInvalid: "请输入有效的邮箱地址。",
  message: "您的留言",
  leave: "提交留言",
  skip: "不留邮箱，直接聊天",
  contactThanks: (email) => `✓ 邮箱已保存：${email}`,
  earlier: "查看更早的消息",
  you: "您",
  team: "客服",
  bot: "智能助手",
  today: "今天",
};

/** The texts for a language tag ("zh-CN", "en-GB"...): Chinese or English. */
export function textsFor(tag) {
  return String(tag || "").toLowerCase().startsWith("zh") ? ZH : EN;
}
