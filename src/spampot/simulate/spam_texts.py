"""Spam-like texts by language: subjects and sentences a campaign is built from.

Written for the simulator (no real spam is copied): each language has enough sentences for
CLD2 to name it, in the charset mail of that language used at the time (``CHARSETS``).
"""

from __future__ import annotations

# language -> (subjects, sentences)
TEXTS: dict[str, tuple[list[str], list[str]]] = {
    "en": (
        ["Cheap meds online", "This stock will explode", "Replica watches sale",
         "OEM software cheap", "Your loan is approved", "Free $500 casino bonus",
         "Your prescription is ready", "Investor news release"],
        ["We ship worldwide in discreet packaging.", "Lowest prices guaranteed, order today.",
         "Our licensed pharmacists answer every question.", "Over one million satisfied clients.",
         "The company just announced a major contract.", "Analysts expect a price of $2.50.",
         "Every detail like the original.", "Prices from $149 with free shipping.",
         "Instant download after payment.", "Full versions with serial numbers.",
         "Bad credit is not a problem.", "Get up to $400,000 in 24 hours.",
         "Join now and double your first deposit.", "Instant payouts to your account.",
         "No obligation, no hidden fees.", "Strong buy recommendation from our newsletter."],
    ),
    "zh-Hant": (
        ["優惠專案限時開跑", "最新投資理財資訊", "代開發票歡迎洽詢", "網路行銷名單出售",
         "減肥瘦身保證有效", "手機門號免費申辦"],
        ["本公司提供全省最便宜的價格，歡迎來電洽詢。", "專業團隊為您服務，品質保證，絕對讓您滿意。",
         "限時優惠活動只到本月底，請把握機會。", "我們擁有最完整的客戶名單與行銷資料。",
         "不需要任何費用，立即加入會員即可享有折扣。", "如不想再收到此信件，請回信告知，謝謝。",
         "保證安全隱密，貨到付款，全台灣皆可配送。", "歡迎各位朋友加入我們的行列，一起賺大錢。"],
    ),
    "zh-Hans": (
        ["代开发票", "最新优惠信息", "企业推广方案", "网络营销软件", "诚招代理加盟"],
        ["本公司常年代开各地发票，税点优惠，欢迎来电咨询。", "专业团队为您提供一站式服务，质量保证。",
         "限时优惠活动，仅限本月，请抓紧时间。", "我们拥有最全面的客户资料和营销数据库。",
         "无需任何费用，立即注册即可享受折扣。", "如果您不想再收到此邮件，请回复告知，谢谢。",
         "诚信经营，安全可靠，全国均可送货上门。", "欢迎各界朋友加盟合作，共同发展，互利共赢。"],
    ),
    "ja": (
        ["お得な情報をお届けします", "出会いのチャンス", "副収入のご案内", "限定キャンペーン"],
        ["今なら入会金無料でご利用いただけます。", "毎日たくさんの女性が登録しています。",
         "簡単な作業で月に三十万円以上の収入が可能です。", "詳しくは下記のサイトをご覧ください。",
         "このメールは配信専用です。", "配信停止をご希望の方はこちらからお手続きください。"],
    ),
    "ko": (
        ["특별 할인 행사 안내", "대출 상담 안내", "부업으로 월 수입 올리기"],
        ["지금 바로 가입하시면 특별 혜택을 드립니다.", "저렴한 이자로 빠르게 대출해 드립니다.",
         "누구나 쉽게 집에서 부업을 할 수 있습니다.", "자세한 내용은 아래 사이트를 방문해 주세요.",
         "수신을 원하지 않으시면 수신 거부를 눌러 주세요."],
    ),
    "ru": (
        ["Выгодное предложение", "Семинар для бухгалтеров", "Реклама в интернете"],
        ["Только в этом месяце скидки на все товары до пятидесяти процентов.",
         "Приглашаем вас принять участие в нашем семинаре.", "Звоните прямо сейчас, количество мест ограничено.",
         "Мы предлагаем лучшие цены и быструю доставку по всей стране.",
         "Если вы не хотите получать наши письма, просто ответьте на это сообщение."],
    ),
    "de": (
        ["Günstige Medikamente", "Ihr Kredit wurde genehmigt"],
        ["Wir liefern weltweit in diskreter Verpackung.", "Die niedrigsten Preise, bestellen Sie noch heute.",
         "Keine versteckten Kosten und keine Verpflichtung.", "Über eine Million zufriedene Kunden vertrauen uns.",
         "Schlechte Bonität ist kein Problem für uns."],
    ),
    "pt": (
        ["Promoção imperdível", "Ganhe dinheiro em casa"],
        ["Compre agora com os melhores preços do mercado.", "Entrega rápida para todo o Brasil.",
         "Não perca esta oportunidade única de ganhar dinheiro.", "Trabalhe em casa e ganhe até cinco mil reais por mês.",
         "Para não receber mais nossas mensagens, responda este email."],
    ),
}  # fmt: skip

# The charset mail in each language was sent in, and how the text part is encoded.
CHARSETS: dict[str, tuple[str, str]] = {
    "en": ("us-ascii", "7bit"),
    "zh-Hant": ("big5", "base64"),
    "zh-Hans": ("gb2312", "base64"),
    "ja": ("iso-2022-jp", "7bit"),
    "ko": ("euc-kr", "base64"),
    "ru": ("koi8-r", "8bit"),
    "de": ("iso-8859-1", "quoted-printable"),
    "pt": ("iso-8859-1", "quoted-printable"),
}

# Share of campaigns per language. The paper publishes no content figures (§5 leaves content
# to future work); this assumes that a campaign is written in the language of the country
# its senders are in, with Table 3's shares: TW and HK 74.27 % (Traditional Chinese), CN
# 15.80 % (Simplified), US, CA and the rest 7.44 % (English), JP 1.03 %, KR 0.78 %, UA 0.34 %
# (Russian), DE 0.18 %, BR 0.16 %.
LANGUAGE_SHARES: dict[str, float] = {
    "zh-Hant": 74.27,
    "zh-Hans": 15.80,
    "en": 7.44,
    "ja": 1.03,
    "ko": 0.78,
    "ru": 0.34,
    "de": 0.18,
    "pt": 0.16,
}

# X-Mailer values forged or sent by bulk-mail tools of the period (the MUAs they imitated),
# and None for none. Equal shares: no source gives their mix.
MAILERS: tuple[str | None, ...] = (
    None,
    "Microsoft Outlook Express 6.00.2900.2180",
    "Microsoft Outlook Express 6.00.2800.1106",
    "Microsoft Office Outlook, Build 11.0.5510",
    "The Bat! (v3.5.25) Professional",
    "Foxmail 6, 10, 201, 20 [cn]",
    "QUALCOMM Windows Eudora Version 7.0.1.0",
    "Mozilla Thunderbird 1.5.0.4 (Windows/20060516)",
    "Dynamic Mail Sender 3.1",
    "Advanced Mass Sender v 4.3",
)
